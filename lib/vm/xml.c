/* libxml2 helpers for the XML readers and writers of lib/vm (xml.h). */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <stdarg.h>

#include <libxml/xmlwriter.h>

#include "xml.h"

static pthread_once_t xml_once = PTHREAD_ONCE_INIT;

static void
xml_init (void)
{
  xmlInitParser ();
}

/* True when TEXT holds S (LEN bytes of TEXT looked at). */
static bool
contains (const char *text, size_t len, const char *s)
{
  return memmem (text, len, s, strlen (s)) != NULL;
}

xmlDocPtr
vm_xml_parse (const char *name, const char *text, size_t len)
{
  xmlParserCtxtPtr ctxt;
  xmlDocPtr doc;

  pthread_once (&xml_once, xml_init);
  /* No description ferry reads has a DTD; refusing one outright keeps
   * entity expansion (billion laughs, external entities) out entirely. */
  if (contains (text, len, "<!DOCTYPE") || contains (text, len, "<!ENTITY")) {
    ferry_error (EINVAL, "%s: the XML declares a DOCTYPE or entities, which "
                 "no VM description has", name);
    return NULL;
  }
  if (len > INT32_MAX) {
    ferry_error (EFBIG, "%s: too large", name);
    return NULL;
  }
  ctxt = xmlNewParserCtxt ();
  if (ctxt == NULL) {
    ferry_error (ENOMEM, "out of memory");
    return NULL;
  }
  doc = xmlCtxtReadMemory (ctxt, text, (int) len, name, NULL,
                           XML_PARSE_NONET | XML_PARSE_NOERROR |
                           XML_PARSE_NOWARNING);
  if (doc == NULL || !ctxt->wellFormed) {
    xmlErrorPtr e = xmlCtxtGetLastError (ctxt);
    char msg[256] = "not well-formed";

    if (e && e->message) {
      size_t n;
      snprintf (msg, sizeof msg, "%s", e->message);
      n = strlen (msg);
      while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == ' '))
        msg[--n] = '\0';
    }
    ferry_error (EINVAL, "%s: line %d: not valid XML: %s", name,
                 e ? e->line : 0, msg);
    xmlFreeDoc (doc);
    xmlFreeParserCtxt (ctxt);
    return NULL;
  }
  xmlFreeParserCtxt (ctxt);
  if (xmlDocGetRootElement (doc) == NULL) {
    ferry_error (EINVAL, "%s: the XML has no root element", name);
    xmlFreeDoc (doc);
    return NULL;
  }
  return doc;
}

bool
vm_xml_is (xmlNodePtr node, const char *name)
{
  return node && node->type == XML_ELEMENT_NODE &&
    strcmp ((const char *) node->name, name) == 0;
}

xmlNodePtr
vm_xml_child (xmlNodePtr node, const char *name)
{
  xmlNodePtr c;

  if (node == NULL)
    return NULL;
  for (c = node->children; c; c = c->next)
    if (vm_xml_is (c, name))
      return c;
  return NULL;
}

xmlNodePtr
vm_xml_next (xmlNodePtr node, const char *name)
{
  for (node = node->next; node; node = node->next)
    if (vm_xml_is (node, name))
      return node;
  return NULL;
}

const char *
vm_xml_attr (xmlNodePtr node, const char *name)
{
  xmlAttrPtr a;

  if (node == NULL)
    return NULL;
  for (a = node->properties; a; a = a->next) {
    if (strcmp ((const char *) a->name, name) == 0 && a->children &&
        a->children->type == XML_TEXT_NODE && a->children->next == NULL)
      return (const char *) a->children->content;
    if (strcmp ((const char *) a->name, name) == 0 && a->children == NULL)
      return "";
  }
  return NULL;
}

char *
vm_xml_text (xmlNodePtr node)
{
  xmlChar *content = xmlNodeGetContent (node);
  const char *s, *e;
  char *r;

  if (content == NULL)
    return strdup ("");
  s = (const char *) content;
  while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')
    s++;
  e = s + strlen (s);
  while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\n' ||
                   e[-1] == '\r'))
    e--;
  r = strndup (s, e - s);
  xmlFree (content);
  return r;
}

char *
vm_xml_child_text (xmlNodePtr node, const char *name)
{
  xmlNodePtr c = vm_xml_child (node, name);

  return c ? vm_xml_text (c) : NULL;
}

char *
vm_xml_escape (const char *s)
{
  size_t n = 0;
  const char *p;
  char *r, *q;

  for (p = s; *p; p++)
    n += *p == '&' ? 5 : *p == '<' || *p == '>' ? 4 : *p == '"' ? 6 :
      *p == '\'' ? 6 : 1;
  r = malloc (n + 1);
  if (r == NULL)
    return NULL;
  for (p = s, q = r; *p; p++) {
    switch (*p) {
    case '&': memcpy (q, "&amp;", 5); q += 5; break;
    case '<': memcpy (q, "&lt;", 4); q += 4; break;
    case '>': memcpy (q, "&gt;", 4); q += 4; break;
    case '"': memcpy (q, "&quot;", 6); q += 6; break;
    case '\'': memcpy (q, "&apos;", 6); q += 6; break;
    default: *q++ = *p;
    }
  }
  *q = '\0';
  return r;
}

/* --- writing ----------------------------------------------------------- */

#define WRITER(x) ((xmlTextWriterPtr) (x)->writer)

int
vm_xw_begin (struct vm_xw *x)
{
  pthread_once (&xml_once, xml_init);
  memset (x, 0, sizeof *x);
  x->buffer = xmlBufferCreate ();
  if (x->buffer)
    x->writer = xmlNewTextWriterMemory (x->buffer, 0);
  if (x->writer == NULL) {
    if (x->buffer)
      xmlBufferFree (x->buffer);
    return ferry_error (ENOMEM, "out of memory");
  }
  if (xmlTextWriterSetIndent (WRITER (x), 1) < 0 ||
      xmlTextWriterSetIndentString (WRITER (x), BAD_CAST "  ") < 0 ||
      xmlTextWriterStartDocument (WRITER (x), NULL, "UTF-8", NULL) < 0)
    x->failed = true;
  return 0;
}

void
vm_xw_start (struct vm_xw *x, const char *element)
{
  if (!x->failed &&
      xmlTextWriterStartElement (WRITER (x), BAD_CAST element) < 0)
    x->failed = true;
}

void
vm_xw_end (struct vm_xw *x)
{
  if (!x->failed && xmlTextWriterEndElement (WRITER (x)) < 0)
    x->failed = true;
}

void
vm_xw_attr (struct vm_xw *x, const char *name, const char *value)
{
  if (!x->failed && value &&
      xmlTextWriterWriteAttribute (WRITER (x), BAD_CAST name,
                                   BAD_CAST value) < 0)
    x->failed = true;
}

/* FMT and AP printed into a new string, or NULL (X then failed). */
static char *
xw_format (struct vm_xw *x, const char *fmt, va_list ap)
{
  char *s;

  if (vasprintf (&s, fmt, ap) == -1) {
    x->failed = true;
    return NULL;
  }
  return s;
}

void
vm_xw_attrf (struct vm_xw *x, const char *name, const char *fmt, ...)
{
  va_list ap;
  char *s;

  va_start (ap, fmt);
  s = xw_format (x, fmt, ap);
  va_end (ap);
  if (s)
    vm_xw_attr (x, name, s);
  free (s);
}

void
vm_xw_text (struct vm_xw *x, const char *text)
{
  if (!x->failed &&
      xmlTextWriterWriteString (WRITER (x), BAD_CAST text) < 0)
    x->failed = true;
}

void
vm_xw_elem (struct vm_xw *x, const char *element, const char *text)
{
  if (!x->failed && text &&
      xmlTextWriterWriteElement (WRITER (x), BAD_CAST element,
                                 BAD_CAST text) < 0)
    x->failed = true;
}

void
vm_xw_elemf (struct vm_xw *x, const char *element, const char *fmt, ...)
{
  va_list ap;
  char *s;

  va_start (ap, fmt);
  s = xw_format (x, fmt, ap);
  va_end (ap);
  if (s)
    vm_xw_elem (x, element, s);
  free (s);
}

void
vm_xw_empty (struct vm_xw *x, const char *element, ...)
{
  const char *name;
  va_list ap;

  vm_xw_start (x, element);
  va_start (ap, element);
  while ((name = va_arg (ap, const char *)) != NULL)
    vm_xw_attr (x, name, va_arg (ap, const char *));
  va_end (ap);
  vm_xw_end (x);
}

char *
vm_xw_finish (struct vm_xw *x, const char *what)
{
  char *r = NULL;

  if (!x->failed && xmlTextWriterEndDocument (WRITER (x)) < 0)
    x->failed = true;
  xmlFreeTextWriter (WRITER (x));
  if (!x->failed)
    r = strdup ((const char *) xmlBufferContent (x->buffer));
  xmlBufferFree (x->buffer);
  if (r == NULL)
    ferry_error (ENOMEM, "%s: writing the XML failed (out of memory)", what);
  return r;
}
