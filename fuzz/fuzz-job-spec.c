/* libFuzzer harness for the job spec reader (ferry_job_spec_parse): the
 * JSON object of a job's "options" and of each VM of a plan file.  The
 * input is made a string; a spec that parses is read through after that
 * string is freed (each string and network rule touched, so a pointer
 * into the input, dangling or unterminated, is found), then freed; a
 * refusal must say why. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <ferry/error.h>
#include <ferry/job.h>

/* Where the strings' lengths go, so that reading them is not optimised
 * away. */
static volatile size_t sink;

/* Touch every string of SPEC; abort when a number breaks the reader's
 * contract (threads and verify-timeout are 0 to 86400). */
static void
read_spec (const struct ferry_job_spec *spec)
{
  const char *const strings[] = {
    spec->source, spec->to, spec->out, spec->format, spec->name, spec->flavor,
  };
  size_t i;

  for (i = 0; i < sizeof strings / sizeof strings[0]; i++)
    if (strings[i])
      sink += strlen (strings[i]);
  if (spec->network_map)
    for (i = 0; spec->network_map[i]; i++)
      sink += strlen (spec->network_map[i]);
  if (spec->threads > 86400 || spec->verify_timeout > 86400)
    abort ();
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  struct ferry_job_spec spec;
  struct ferry_job_spec_hold *hold = NULL;
  char *text = malloc (size + 1);
  int r;

  if (text == NULL)
    return 0;
  memcpy (text, data, size);
  text[size] = '\0';
  r = ferry_job_spec_parse (text, &spec, &hold);
  free (text);
  if (r == 0)
    read_spec (&spec);
  else {
    const char *msg = ferry_get_error ();
    if (hold != NULL || msg == NULL || *msg == '\0')
      abort ();
  }
  ferry_job_spec_free (hold);
  return 0;
}
