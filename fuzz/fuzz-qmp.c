/* libFuzzer harness for the QMP reply parser (ferry_qmp_parse_message):
 * the input is parsed whole, then line by line as the client reads a
 * stream (split at '\n', a '\r' before it dropped).  A message that
 * parses must keep the parser's contract (its kind's strings set and
 * inside the object, an id of -1 or more); a refusal must say why. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include <ferry/error.h>
#include <ferry/qmp.h>

/* Where the strings' lengths go, so that reading them is not optimised
 * away. */
static volatile size_t sink;

/* Parse TEXT (LEN bytes) and check what comes out. */
static void
parse_one (const char *text, size_t len)
{
  struct ferry_qmp_message m;

  if (ferry_qmp_parse_message (text, len, &m) == -1) {
    const char *msg = ferry_get_error ();
    if (msg == NULL || *msg == '\0')
      abort ();
    return;
  }
  if (m.obj == NULL || m.id < -1)
    abort ();
  switch (m.kind) {
  case FERRY_QMP_EVENT:
    if (m.event == NULL)
      abort ();
    sink += strlen (m.event);
    break;
  case FERRY_QMP_ERROR:
    if (m.error_class == NULL || m.error_desc == NULL)
      abort ();
    sink += strlen (m.error_class) + strlen (m.error_desc);
    break;
  case FERRY_QMP_GREETING:
  case FERRY_QMP_RETURN:
    break;
  default:
    abort ();
  }
  /* What the client does with a reply: print it back. */
  sink += strlen (json_object_to_json_string_ext (m.obj,
                                                  JSON_C_TO_STRING_PLAIN));
  json_object_put (m.obj);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  /* A copy of exactly SIZE bytes, so reading past the end is caught. */
  char *text = malloc (size ? size : 1);
  size_t start = 0, i;

  if (text == NULL)
    return 0;
  memcpy (text, data, size);
  parse_one (text, size);
  for (i = 0; i < size; i++)
    if (text[i] == '\n') {
      size_t end = i;
      if (end > start && text[end - 1] == '\r')
        end--;
      if (end > start)
        parse_one (text + start, end - start);
      start = i + 1;
    }
  free (text);
  return 0;
}
