/* Running a cold V2V: convert every disk through the copy engine, write
 * the target's description, and put the output folder in place.
 *
 * NOTES ON CRASH SAFETY
 *
 * 1. The output folder is a pending folder target (<ferry/target.h>,
 *    lib/image/target.c): everything is written into a hidden folder
 *    beside it (".NAME.ferry-TAG", ours alone, on the same file system).
 *    Only when every disk is converted and closed (the drivers write
 *    their tables and footers at close) and the description is written
 *    does the commit fsync every file and the folder, rename it to the
 *    output folder, which must not exist (never replacing), and fsync the
 *    parent, every result checked.
 *
 * 2. On any failure, and on a cancel (the copy engine stops and returns
 *    EINTR), the hidden folder is removed with everything in it.  The
 *    output folder therefore either does not exist, or is complete; a
 *    process killed half way leaves the hidden folder, which the next run
 *    into the same parent removes (target.c notes 5 and 6).  Messages
 *    name the output folder, never the hidden one.
 *
 * 3. Sources are opened read-only; a disk inside an OVA is read in
 *    place (ferry_image_open_window), so nothing is unpacked.
 *
 * 4. With no_flush (-t unsafe) nothing is flushed or fsync'd: the rename
 *    still comes last, but after a crash the folder may exist holding
 *    data that never reached the disk, which is what the option asks for.
 *
 * 5. For an OVA target the disks are first written as streamOptimized
 *    VMDKs in the hidden folder, hashed, and packed with the descriptor
 *    and the manifest into NAME.ova (the manifest must come before the
 *    disks, so their digests must be known first); the VMDKs are then
 *    removed, before the rename.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ferry/copy.h>
#include <ferry/guest.h>
#include <ferry/target.h>

#include "internal.h"
#include "../common/cleanup.h"
#include "../common/stop.h"
#include "../common/util.h"

/* True when the caller asked to stop: its cancel flag, or a stop request
 * (ferry_request_stop). */
static bool
cancelled (const struct ferry_v2v_options *opts)
{
  return (opts->cancel && *opts->cancel) || stop_requested ();
}

/* What the per-disk progress callback needs. */
struct run_progress {
  const struct ferry_v2v_options *opts;
  struct ferry_v2v_progress p;
  uint64_t before;             /* data bytes of the disks already copied */
  double start;
};

static void
copy_progress (const struct ferry_progress *fp, void *opaque)
{
  struct run_progress *rp = opaque;

  rp->p.disk_progress = *fp;
  rp->p.done = rp->before + fp->done;
  if (rp->p.done > rp->p.total)
    rp->p.total = rp->p.done;
  rp->p.elapsed = now_seconds () - rp->start;
  rp->p.finished = false;
  rp->opts->progress (&rp->p, rp->opts->progress_opaque);
}

/* Copy the NULL-terminated list REMOVED into SUMMARY. */
static int
keep_removed (struct ferry_v2v_summary *summary, const char *const *removed)
{
  size_t n = 0, i;

  while (removed && removed[n])
    n++;
  summary->removed = calloc (n + 1, sizeof *summary->removed);
  if (summary->removed == NULL)
    return ferry_error (ENOMEM, "out of memory");
  for (i = 0; i < n; i++)
    if ((summary->removed[i] = strdup (removed[i])) == NULL)
      return ferry_error (ENOMEM, "out of memory");
  return 0;
}

/* Write TEXT into the new file PATH with MODE. */
static int
write_text (const char *path, const char *text, mode_t mode)
{
  int fd = open (path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);

  if (fd == -1)
    return ferry_error_errno (errno, "%s", path);
  if (full_pwrite (fd, text, strlen (text), 0) == -1) {
    ferry_error_errno (errno, "%s: write", path);
    close (fd);
    return -1;
  }
  if (close (fd) == -1)
    return ferry_error_errno (errno, "%s: close", path);
  return 0;
}

/* Convert disk PD of the plan into the file PATH. */
static int
convert_disk (struct ferry_v2v_plan *plan, struct ferry_v2v_disk *pd,
              const char *path, const struct ferry_v2v_options *opts,
              struct run_progress *rp)
{
  const struct ferry_vm_disk *d = &plan->vm->disks[pd->index];
  struct ferry_copy_options copts = {
    .threads = opts->threads,
    .no_flush = opts->no_flush,
    .cancel = opts->cancel,
    .progress = opts->progress ? copy_progress : NULL,
    .progress_opaque = rp,
  };
  bool stream = opts->target == FERRY_V2V_OVA;
  struct ferry_image *src = NULL, *dst;
  int r;

  if (!(d->flags & FERRY_VM_DISK_NO_FILE)) {
    src = v2v_open_source (d, pd->source, pd->virtual_size);
    if (src == NULL)
      return -1;
  }
  dst = ferry_image_create (path, pd->target_format, pd->virtual_size,
                            stream ? "subformat=streamOptimized" : NULL);
  if (dst == NULL) {
    ferry_image_close (src);
    return -1;
  }
  r = src ? ferry_copy (src, dst, &copts) : 0;
  if (r == -1) {
    /* The copy's error says what failed; the close would only add that
     * the image is not finished. */
    struct error_saved saved;
    error_save (&saved);
    ferry_image_close (dst);
    error_restore (&saved);
  }
  else if (ferry_image_close (dst) == -1)
    r = -1;
  ferry_image_close (src);
  if (r == -1)
    ferry_error_prefix ("disk %zu (%s)", pd->index + 1, pd->source);
  return r;
}

/* The description of the target, with the disks where they now are. */
static char *
describe (struct ferry_v2v_plan *plan, const struct ferry_v2v_options *opts,
          const char *staging)
{
  struct ferry_vm *vm = plan->vm;
  size_t n = plan->nr_disks ? plan->nr_disks : 1, i;
  CLEANUP_FREE const char **paths = calloc (n, sizeof *paths);
  CLEANUP_FREE const char **formats = calloc (n, sizeof *formats);
  CLEANUP_FREE uint64_t *sizes = calloc (n, sizeof *sizes);
  CLEANUP_FREE uint64_t *file_sizes = calloc (n, sizeof *file_sizes);
  CLEANUP_FREE uint64_t *populated = calloc (n, sizeof *populated);
  CLEANUP_FREE char **owned = calloc (n, sizeof *owned);
  struct ferry_vm_output out = {
    .keep_devices = opts->keep_devices, .flavor = opts->flavor,
  };
  char *text = NULL;

  if (!paths || !formats || !sizes || !file_sizes || !populated || !owned) {
    ferry_error (ENOMEM, "out of memory");
    return NULL;
  }
  for (i = 0; i < plan->nr_disks; i++) {
    const struct ferry_v2v_disk *pd = &plan->disks[i];
    struct stat st;

    if (!pd->migrated)
      continue;
    /* libvirt wants absolute paths; the rest name files beside them. */
    if (opts->target == FERRY_V2V_LIBVIRT) {
      if (asprintf (&owned[i], "%s/%s", plan->out_dir, pd->target_name) == -1)
        goto nomem;
      paths[i] = owned[i];
    }
    else
      paths[i] = pd->target_name;
    formats[i] = pd->target_format;
    sizes[i] = pd->virtual_size;
    populated[i] = pd->data_bytes;
    {
      CLEANUP_FREE char *staged = NULL;
      if (asprintf (&staged, "%s/%s", staging, pd->target_name) == -1)
        goto nomem;
      if (stat (staged, &st) == 0)
        file_sizes[i] = st.st_size;
    }
  }
  out.disk_paths = paths;
  out.disk_formats = formats;
  out.disk_sizes = sizes;
  out.disk_file_sizes = file_sizes;
  out.disk_populated = populated;

  switch (opts->target) {
  case FERRY_V2V_LIBVIRT: text = ferry_vm_to_libvirt (vm, &out); break;
  case FERRY_V2V_QEMU: text = ferry_vm_to_qemu (vm, &out); break;
  case FERRY_V2V_OVA: text = ferry_vm_to_ovf (vm, &out); break;
  case FERRY_V2V_LOCAL: text = ferry_vm_to_json (vm, &out); break;
  }
  for (i = 0; i < plan->nr_disks; i++)
    free (owned[i]);
  return text;

 nomem:
  for (i = 0; i < plan->nr_disks; i++)
    free (owned[i]);
  ferry_error (ENOMEM, "out of memory");
  return NULL;
}

/* Pack the OVF TEXT and the staged VMDKs into STAGING/NAME.ova, then
 * remove the VMDKs (note 5). */
static int
pack_ova (struct ferry_v2v_plan *plan, const char *staging, const char *text,
          const struct ferry_v2v_options *opts)
{
  size_t n = plan->nr_disks + 1, k = 0, i;
  CLEANUP_FREE struct ferry_ova_input *in = calloc (n, sizeof *in);
  CLEANUP_FREE char **paths = calloc (n, sizeof *paths);
  CLEANUP_FREE char *ova = NULL, *ovf_name = NULL, *mf_name = NULL;
  size_t base_len = strlen (plan->description) - 4;   /* ".ova" */
  struct ferry_v2v_progress p = { .phase = "pack" };
  int r = -1;

  if (in == NULL || paths == NULL ||
      asprintf (&ova, "%s/%s", staging, plan->description) == -1 ||
      asprintf (&ovf_name, "%.*s.ovf", (int) base_len,
                plan->description) == -1 ||
      asprintf (&mf_name, "%.*s.mf", (int) base_len,
                plan->description) == -1)
    return ferry_error (ENOMEM, "out of memory");
  in[k++] = (struct ferry_ova_input) {
    .name = ovf_name, .data = text, .len = strlen (text),
  };
  for (i = 0; i < plan->nr_disks; i++) {
    if (!plan->disks[i].migrated)
      continue;
    if (asprintf (&paths[i], "%s/%s", staging,
                  plan->disks[i].target_name) == -1)
      goto out;
    in[k++] = (struct ferry_ova_input) {
      .name = plan->disks[i].target_name, .path = paths[i],
    };
  }
  if (opts->progress)
    opts->progress (&p, opts->progress_opaque);
  r = ferry_ova_write (ova, in, k, mf_name, "SHA256");
  if (r == 0)
    for (i = 0; i < plan->nr_disks; i++)
      if (paths[i] && unlink (paths[i]) == -1)
        r = ferry_error_errno (errno, "%s", paths[i]);
  if (r == 0 && opts->progress) {
    p.finished = true;
    opts->progress (&p, opts->progress_opaque);
  }

 out:
  for (i = 0; i < plan->nr_disks; i++)
    free (paths[i]);
  if (r == -1 && ferry_get_errno () == 0)
    ferry_error (ENOMEM, "out of memory");
  return r;
}

void
ferry_v2v_summary_free (struct ferry_v2v_summary *summary)
{
  size_t i;

  for (i = 0; summary->removed && summary->removed[i]; i++)
    free (summary->removed[i]);
  free (summary->removed);
  ferry_guest_report_free (summary->guest);
  free (summary->disk_seconds);
  free (summary->disk_bytes);
  memset (summary, 0, sizeof *summary);
}

int
ferry_v2v_run (struct ferry_v2v_plan *plan,
               const struct ferry_v2v_options *opts,
               struct ferry_v2v_summary *summary)
{
  CLEANUP_FREE char *text = NULL, *desc_path = NULL;
  struct run_progress rp = { .opts = opts };
  double start = now_seconds ();
  struct ferry_target *target;
  const char *staging;
  size_t i;

  memset (summary, 0, sizeof *summary);
  if (plan->nr_errors)
    return ferry_error (EINVAL, "the checks found %zu error%s: nothing was "
                        "done", plan->nr_errors,
                        plan->nr_errors == 1 ? "" : "s");
  summary->nr_disks = plan->nr_disks;
  summary->disk_seconds = calloc (plan->nr_disks + 1, sizeof (double));
  summary->disk_bytes = calloc (plan->nr_disks + 1, sizeof (uint64_t));
  if (summary->disk_seconds == NULL || summary->disk_bytes == NULL) {
    ferry_v2v_summary_free (summary);
    return ferry_error (ENOMEM, "out of memory");
  }
  target = ferry_target_begin (plan->out_dir, NULL, FERRY_TARGET_FOLDER |
                               (opts->no_flush ? FERRY_TARGET_NO_SYNC : 0));
  if (target == NULL) {
    ferry_v2v_summary_free (summary);
    return -1;
  }
  staging = ferry_target_path (target);
  if (keep_removed (summary, ferry_target_removed (target)) == -1)
    goto err;

  rp.p.phase = "copy";
  rp.p.nr_disks = plan->nr_disks;
  rp.p.total = plan->data_bytes;
  rp.start = now_seconds ();
  for (i = 0; i < plan->nr_disks; i++) {
    struct ferry_v2v_disk *pd = &plan->disks[i];
    CLEANUP_FREE char *path = NULL;
    double t0 = now_seconds ();
    struct stat st;

    if (!pd->migrated)
      continue;
    if (cancelled (opts)) {
      ferry_error (EINTR, "interrupted");
      goto err;
    }
    if (asprintf (&path, "%s/%s", staging, pd->target_name) == -1) {
      ferry_error (ENOMEM, "out of memory");
      goto err;
    }
    rp.p.disk = i;
    rp.p.disk_name = pd->target_name;
    memset (&rp.p.disk_progress, 0, sizeof rp.p.disk_progress);
    if (convert_disk (plan, pd, path, opts, &rp) == -1)
      goto err;
    summary->disk_seconds[i] = now_seconds () - t0;
    if (stat (path, &st) == 0)
      summary->disk_bytes[i] = (uint64_t) st.st_blocks * 512;
    rp.before += pd->data_bytes;
    summary->bytes += pd->data_bytes;
  }
  if (opts->progress) {
    rp.p.done = rp.p.total = MAX (rp.before, rp.p.total);
    rp.p.finished = true;
    rp.p.elapsed = now_seconds () - rp.start;
    opts->progress (&rp.p, opts->progress_opaque);
  }
  summary->copy_seconds = now_seconds () - rp.start;

  /* The guest, on the copies (convert.c). */
  if (v2v_convert_guest (plan, opts, staging, summary) == -1)
    goto err;

  text = describe (plan, opts, staging);
  if (text == NULL)
    goto err;
  if (opts->target == FERRY_V2V_OVA) {
    if (pack_ova (plan, staging, text, opts) == -1)
      goto err;
  }
  else {
    if (asprintf (&desc_path, "%s/%s", staging, plan->description) == -1) {
      ferry_error (ENOMEM, "out of memory");
      goto err;
    }
    if (write_text (desc_path, text, opts->target == FERRY_V2V_QEMU ?
                    0755 : 0644) == -1)
      goto err;
  }
  if (cancelled (opts)) {
    ferry_error (EINTR, "interrupted");
    goto err;
  }
  if (ferry_target_commit (target) == -1)
    goto err;
  ferry_target_free (target);
  summary->seconds = now_seconds () - start;
  return 0;

 err:
  ferry_target_free (target);          /* removes the hidden folder */
  {
    /* The conversion's report outlives a failure: it says what failed;
     * so does the list of what was swept. */
    struct ferry_guest_report *guest = summary->guest;
    char **removed = summary->removed;
    summary->guest = NULL;
    summary->removed = NULL;
    ferry_v2v_summary_free (summary);
    summary->guest = guest;
    summary->removed = removed;
  }
  return -1;
}
