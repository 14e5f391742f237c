/* lib/vm: the libxml2 helpers the XML readers (OVF, .vbox) and writers
 * (libvirt, OVF) share.  Elements and attributes are matched by local
 * name, whatever their namespace prefix: OVF 0.9, 1.x and 2.0 put the
 * same names in different namespaces, and writers differ in which prefix
 * they use for which. */
#ifndef FERRY_VM_XML_H
#define FERRY_VM_XML_H

#include <stdbool.h>
#include <stddef.h>

#include <libxml/parser.h>
#include <libxml/tree.h>

#include "internal.h"

/* Parse TEXT (LEN bytes) safely: no network, no external entities or DTD,
 * libxml2's limits on entity expansion.  NULL with the error "NAME: line
 * N: what libxml2 says" when it is not well-formed XML. */
xmlDocPtr vm_xml_parse (const char *name, const char *text, size_t len);

/* True when NODE is an element whose local name is NAME. */
bool vm_xml_is (xmlNodePtr node, const char *name);
/* The first child element of NODE called NAME, or NULL. */
xmlNodePtr vm_xml_child (xmlNodePtr node, const char *name);
/* The next sibling element of NODE called NAME (after NODE), or NULL. */
xmlNodePtr vm_xml_next (xmlNodePtr node, const char *name);
/* The attribute called NAME (any namespace) of NODE, or NULL; it belongs
 * to the document. */
const char *vm_xml_attr (xmlNodePtr node, const char *name);
/* The text of NODE's first child element NAME, trimmed, as a string the
 * caller frees; NULL when absent.  *ERR is set when out of memory. */
char *vm_xml_child_text (xmlNodePtr node, const char *name);
/* The text of NODE itself, trimmed; the caller frees it. */
char *vm_xml_text (xmlNodePtr node);

/* Escape S for XML text or an attribute value; the caller frees it. */
char *vm_xml_escape (const char *s);

/* Writing XML (libvirt, OVF) with libxml2's xmlTextWriter, indented.  The
 * first failure is remembered and every later call does nothing, so a
 * writer checks once, at vm_xw_finish. */
struct vm_xw {
  void *writer;                /* xmlTextWriterPtr */
  void *buffer;                /* xmlBufferPtr */
  bool failed;
};
int vm_xw_begin (struct vm_xw *x);
void vm_xw_start (struct vm_xw *x, const char *element);
void vm_xw_end (struct vm_xw *x);
/* An attribute of the element being written; nothing when VALUE is NULL
 * (the printf'd variant always writes). */
void vm_xw_attr (struct vm_xw *x, const char *name, const char *value);
void vm_xw_attrf (struct vm_xw *x, const char *name, const char *fmt, ...)
  __attribute__ ((format (printf, 3, 4)));
/* Text inside the element being written. */
void vm_xw_text (struct vm_xw *x, const char *text);
/* <ELEMENT>TEXT</ELEMENT>; nothing when TEXT is NULL. */
void vm_xw_elem (struct vm_xw *x, const char *element, const char *text);
void vm_xw_elemf (struct vm_xw *x, const char *element, const char *fmt, ...)
  __attribute__ ((format (printf, 3, 4)));
/* An empty element with attributes NAME, VALUE, ... NULL. */
void vm_xw_empty (struct vm_xw *x, const char *element, ...)
  __attribute__ ((sentinel));
/* End the document and return it (the caller frees it), or NULL with the
 * error set; frees the writer either way. */
char *vm_xw_finish (struct vm_xw *x, const char *what);

/* vbox.c: fill VM from a VirtualBox <Machine> element (the one of a
 * .vbox file, or vbox:Machine inside an OVF).  IN_OVF: the OVF holds the
 * disks, NICs and sizes; only what it lacks (firmware, MAC addresses,
 * secure boot) is taken from the machine.  NAME is for messages, DIR
 * resolves disk files. */
int vm_vbox_machine (struct ferry_vm *vm, const char *name, xmlNodePtr machine,
                     const char *dir, bool in_ovf);

#endif /* FERRY_VM_XML_H */
