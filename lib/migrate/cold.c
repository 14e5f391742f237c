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
#include <stdarg.h>
#include <stdint.h>
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

/* What the checkpoint callback of one disk's copy needs. */
struct disk_checkpoint {
  const struct ferry_v2v_journal *j;
  int disk;
  const char *path;
  struct ferry_v2v_disk_state st;
};

/* The copy engine's checkpoint: mark the target file, tell the journal. */
static int
disk_checkpoint (uint64_t durable, void *opaque)
{
  struct disk_checkpoint *dc = opaque;

  if (ferry_copy_mark_target (dc->path, durable, &dc->st.mark) == -1)
    return -1;
  return dc->j->checkpoint (dc->j->opaque, dc->disk, &dc->st);
}

/* Tell the journal's notes, if it keeps any, a line at LEVEL. */
static void
journal_note (const struct ferry_v2v_journal *j, const char *level,
              const char *fmt, ...)
{
  CLEANUP_FREE char *msg = NULL;
  va_list ap;
  int r;

  if (j == NULL || j->note == NULL)
    return;
  va_start (ap, fmt);
  r = vasprintf (&msg, fmt, ap);
  va_end (ap);
  if (r >= 0)
    j->note (j->opaque, level, msg);
}

/* The partial target PATH of plan disk I, reopened to go on where the
 * journal's checkpoint says, or NULL (with a note saying why) when the
 * disk must be copied again: no checkpoint, the source changed, the
 * target is not the checkpoint's or cannot resume. */
static struct ferry_image *
reopen_partial (const struct ferry_v2v_journal *j, size_t i,
                struct ferry_v2v_disk *pd, const char *path,
                const char *ident, uint64_t *resume_from)
{
  const struct ferry_v2v_disk_state *old;
  struct ferry_image *dst;

  *resume_from = 0;
  old = j->disk_state ? j->disk_state (j->opaque, i) : NULL;
  if (old == NULL || old->mark.durable == 0)
    return NULL;
  if (strcmp (old->source, ident) != 0) {
    journal_note (j, "warning", "disk %zu (%s): its source changed since "
                  "the checkpoint, so it is copied again from the start",
                  i + 1, pd->source);
    return NULL;
  }
  dst = ferry_copy_reopen_target (path, pd->target_format, &old->mark);
  if (dst == NULL) {
    journal_note (j, "warning", "disk %zu (%s): cannot resume it (%s), so "
                  "it is copied again from the start", i + 1, pd->source,
                  ferry_get_error ());
    return NULL;
  }
  if (!ferry_image_can_resume (dst)) {
    ferry_image_close (dst);
    journal_note (j, "info", "disk %zu (%s): a %s target cannot resume "
                  "half way, so it is copied again from the start", i + 1,
                  pd->source, pd->target_format);
    return NULL;
  }
  *resume_from = old->mark.durable;
  journal_note (j, "info", "disk %zu (%s): resuming at %" PRIu64 " bytes "
                "of %" PRIu64, i + 1, pd->source, *resume_from,
                pd->virtual_size);
  return dst;
}

/* Convert disk I of the plan into the file PATH, resuming from the
 * journal's checkpoint when it has one that still holds. */
static int
convert_disk (struct ferry_v2v_plan *plan, size_t i, const char *path,
              const struct ferry_v2v_options *opts, struct run_progress *rp,
              const struct ferry_v2v_journal *j)
{
  struct ferry_v2v_disk *pd = &plan->disks[i];
  const struct ferry_vm_disk *d = &plan->vm->disks[pd->index];
  struct disk_checkpoint dc = { .j = j, .disk = i, .path = path };
  struct ferry_copy_options copts = {
    .threads = opts->threads,
    .no_flush = opts->no_flush,
    .cancel = opts->cancel,
    .progress = opts->progress ? copy_progress : NULL,
    .progress_opaque = rp,
  };
  bool stream = opts->target == FERRY_V2V_OVA;
  struct ferry_image *src = NULL, *dst = NULL;
  int r;

  if (!(d->flags & FERRY_VM_DISK_NO_FILE)) {
    src = v2v_open_source (d, pd->source, pd->virtual_size);
    if (src == NULL)
      return -1;
  }
  if (j) {
    if (ferry_v2v_source_ident (plan, i, dc.st.source,
                                sizeof dc.st.source) == -1) {
      ferry_image_close (src);
      return -1;
    }
    dst = reopen_partial (j, i, pd, path, dc.st.source, &copts.resume_from);
    if (dst == NULL) {
      /* A fresh start: whatever an earlier run left goes first. */
      struct stat st;
      if (lstat (path, &st) == 0 &&
          ferry_image_remove (path, pd->target_format) == -1 &&
          unlink (path) == -1 && errno != ENOENT) {
        ferry_error_errno (errno, "%s", path);
        ferry_image_close (src);
        return -1;
      }
    }
  }
  if (dst == NULL)
    dst = ferry_image_create (path, pd->target_format, pd->virtual_size,
                              stream ? "subformat=streamOptimized" : NULL);
  if (dst == NULL) {
    ferry_image_close (src);
    return -1;
  }
  if (j && j->checkpoint && ferry_image_can_resume (dst)) {
    copts.checkpoint = disk_checkpoint;
    copts.checkpoint_opaque = &dc;
    copts.checkpoint_bytes = j->checkpoint_bytes;
    copts.checkpoint_seconds = j->checkpoint_seconds;
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

int
ferry_v2v_source_ident (const struct ferry_v2v_plan *plan, size_t disk,
                        char *buf, size_t len)
{
  const struct ferry_v2v_disk *pd = &plan->disks[disk];
  const struct ferry_vm_disk *d = &plan->vm->disks[pd->index];
  struct stat st;

  if (d->path == NULL || (d->flags & FERRY_VM_DISK_NO_FILE)) {
    snprintf (buf, len, "none");
    return 0;
  }
  /* A server's export (a running VM's disk): no file to tell by; a warm
   * run knows by its bitmaps whether what it copied still holds. */
  if (ferry_image_is_uri (d->path)) {
    snprintf (buf, len, "%s", d->path);
    return 0;
  }
  if (stat (d->path, &st) == -1)
    return ferry_error_errno (errno, "%s", d->path);
  snprintf (buf, len, "%ju:%ju:%jd:%jd.%09ld:%" PRIu64 ":%" PRIu64 ":%"
            PRIu64, (uintmax_t) st.st_dev, (uintmax_t) st.st_ino,
            (intmax_t) st.st_size, (intmax_t) st.st_mtim.tv_sec,
            st.st_mtim.tv_nsec, d->member_offset, d->member_length,
            pd->virtual_size);
  return 0;
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

/* Pack the OVF TEXT and the staged VMDKs into STAGING/NAME.ova; the
 * VMDKs are removed before the commit (note 5). */
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

/* --- steps ------------------------------------------------------------------ */

/* True when the journal says STEP (of DISK) is done. */
static bool
step_done (const struct ferry_v2v_journal *j, const char *step, int disk)
{
  return j && j->done && j->done (j->opaque, step, disk);
}

/* STEP (of DISK) begins. */
static int
step_begin (const struct ferry_v2v_journal *j, const char *step, int disk)
{
  return j && j->begin ? j->begin (j->opaque, step, disk) : 0;
}

/* STEP (of DISK) ended: R is its result (0 ok, -1 failed with the error
 * set, which stays set).  Returns R, or -1 when the journal failed. */
static int
step_end (const struct ferry_v2v_journal *j, const char *step, int disk,
          int r, const char *outcome)
{
  struct error_saved saved;
  int jr;

  if (j == NULL || j->end == NULL)
    return r;
  if (r == 0)
    return j->end (j->opaque, step, disk, true, outcome);
  error_save (&saved);
  jr = j->end (j->opaque, step, disk, false, ferry_get_error ());
  error_restore (&saved);
  (void) jr;
  return -1;
}

/* Remove the staged VMDKs of an OVA target (packed into NAME.ova; note
 * 5), before the commit.  A file already gone is no error. */
static int
remove_packed (struct ferry_v2v_plan *plan, const char *staging)
{
  size_t i;

  for (i = 0; i < plan->nr_disks; i++) {
    CLEANUP_FREE char *path = NULL;
    if (!plan->disks[i].migrated)
      continue;
    if (asprintf (&path, "%s/%s", staging, plan->disks[i].target_name) == -1)
      return ferry_error (ENOMEM, "out of memory");
    if (unlink (path) == -1 && errno != ENOENT)
      return ferry_error_errno (errno, "%s", path);
  }
  return 0;
}

/* The copy of every disk (the "copy" steps).  *RECOPIED (OUT): a disk
 * whose copy was done was copied again (its guest conversion is gone). */
static int
copy_disks (struct ferry_v2v_plan *plan, const struct ferry_v2v_options *opts,
            const struct ferry_v2v_journal *j, const char *staging,
            struct ferry_v2v_summary *summary, bool *recopied)
{
  struct run_progress rp = { .opts = opts };
  size_t i;

  rp.p.phase = "copy";
  rp.p.nr_disks = plan->nr_disks;
  rp.p.total = plan->data_bytes;
  rp.start = now_seconds ();
  for (i = 0; i < plan->nr_disks; i++) {
    struct ferry_v2v_disk *pd = &plan->disks[i];
    CLEANUP_FREE char *path = NULL;
    double t0 = now_seconds ();
    struct stat st;
    bool gone;
    int r;

    if (!pd->migrated)
      continue;
    if (asprintf (&path, "%s/%s", staging, pd->target_name) == -1)
      return ferry_error (ENOMEM, "out of memory");
    /* A copy done, then removed from the working folder (by hand): copied
     * again, or the output would lack it.  An OVA's disks are removed
     * once packed (note 5), so there only before the packing. */
    gone = step_done (j, "copy", i) &&
      !(opts->target == FERRY_V2V_OVA && step_done (j, "describe", -1)) &&
      lstat (path, &st) == -1 && errno == ENOENT;
    if (gone) {
      journal_note (j, "warning", "disk %zu (%s): its copy is gone from the "
                    "working folder, so it is copied again", i + 1,
                    pd->source);
      *recopied = true;
    }
    if (!step_done (j, "copy", i) || gone) {
      if (cancelled (opts))
        return ferry_error (EINTR, "interrupted");
      if (step_begin (j, "copy", i) == -1)
        return -1;
      rp.p.disk = i;
      rp.p.disk_name = pd->target_name;
      memset (&rp.p.disk_progress, 0, sizeof rp.p.disk_progress);
      r = convert_disk (plan, i, path, opts, &rp, j);
      if (step_end (j, "copy", i, r, NULL) == -1)
        return -1;
      summary->bytes += pd->data_bytes;
    }
    summary->disk_seconds[i] = now_seconds () - t0;
    if (stat (path, &st) == 0)
      summary->disk_bytes[i] = (uint64_t) st.st_blocks * 512;
    rp.before += pd->data_bytes;
  }
  if (opts->progress) {
    rp.p.done = rp.p.total = MAX (rp.before, rp.p.total);
    rp.p.finished = true;
    rp.p.elapsed = now_seconds () - rp.start;
    opts->progress (&rp.p, opts->progress_opaque);
  }
  summary->copy_seconds = now_seconds () - rp.start;
  return 0;
}

/* The description of the target (the "describe" step): NAME.xml,
 * NAME.sh or NAME.json, or NAME.ova packed with the disks. */
static int
write_description (struct ferry_v2v_plan *plan,
                   const struct ferry_v2v_options *opts, const char *staging)
{
  CLEANUP_FREE char *text = NULL, *desc_path = NULL;

  text = describe (plan, opts, staging);
  if (text == NULL)
    return -1;
  if (asprintf (&desc_path, "%s/%s", staging, plan->description) == -1)
    return ferry_error (ENOMEM, "out of memory");
  /* What an earlier, interrupted run wrote goes first. */
  if (unlink (desc_path) == -1 && errno != ENOENT)
    return ferry_error_errno (errno, "%s", desc_path);
  if (opts->target == FERRY_V2V_OVA)
    return pack_ova (plan, staging, text, opts);
  return write_text (desc_path, text, opts->target == FERRY_V2V_QEMU ?
                     0755 : 0644);
}

/* The test boot (the "verify" step of a test run): boot what is in
 * STAGING, isolated, on a throw-away overlay, until a login prompt. */
static int
test_boot (struct ferry_v2v_plan *plan, const struct ferry_v2v_journal *j,
           const char *staging)
{
  struct ferry_guest_target t;
  struct ferry_guest_boot_options o = {
    .timeout = j->boot_timeout ? j->boot_timeout : 600,
  };
  struct ferry_guest_boot_result res;
  CLEANUP_FREE char **paths = NULL;
  CLEANUP_FREE const char **origs = NULL;
  size_t i, n = strlen (plan->out_dir);
  int r;

  if (ferry_v2v_read_target (staging, &t) == -1)
    return -1;
  /* A libvirt description names the disks where they will be, in the
   * output folder: boot them where they are now. */
  paths = calloc (t.nr_disks + 1, sizeof *paths);
  origs = calloc (t.nr_disks + 1, sizeof *origs);
  if (paths == NULL || origs == NULL) {
    ferry_guest_target_free (&t);
    return ferry_error (ENOMEM, "out of memory");
  }
  for (i = 0; i < t.nr_disks && strcmp (staging, plan->out_dir) != 0; i++)
    if (strncmp (t.disks[i].path, plan->out_dir, n) == 0 &&
        t.disks[i].path[n] == '/') {
      if (asprintf (&paths[i], "%s%s", staging, t.disks[i].path + n) == -1) {
        paths[i] = NULL;
        r = ferry_error (ENOMEM, "out of memory");
        goto out;
      }
      origs[i] = t.disks[i].path;
      t.disks[i].path = paths[i];
    }
  o.disk_bus = t.lsi_scsi && t.disk_bus && strcmp (t.disk_bus, "scsi") == 0
    ? "lsi" : t.disk_bus;
  o.nic_model = t.nic_model ? t.nic_model : "none";
  o.macs = (const char *const *) t.macs;
  o.firmware = t.firmware;
  o.memory = t.memory;
  o.vcpus = t.vcpus;
  {
    const char *accel = getenv ("FERRY_ACCEL");
    if (accel && strcmp (accel, "tcg") == 0)
      o.accel = FERRY_GUEST_ACCEL_TCG;
  }
  r = ferry_guest_boot (t.disks, t.nr_disks, &o, &res);
  if (r == 0) {
    if (res.booted)
      journal_note (j, "info", "test boot: booted to \"%s\" in %.0f s",
                    res.matched ? res.matched : "", res.seconds);
    else
      r = ferry_error (EIO, "the test boot failed: %s (after %.0f s)",
                       res.reason ? res.reason : "no login prompt",
                       res.seconds);
    ferry_guest_boot_result_free (&res);
  }
 out:
  /* The paths were ours: give the target back its own before freeing. */
  for (i = 0; i < t.nr_disks; i++)
    if (paths[i] && t.disks[i].path == paths[i])
      t.disks[i].path = origs[i];
  for (i = 0; i < t.nr_disks; i++)
    free (paths[i]);
  ferry_guest_target_free (&t);
  return r;
}

int
ferry_v2v_run_journal (struct ferry_v2v_plan *plan,
                       const struct ferry_v2v_options *opts,
                       const struct ferry_v2v_journal *j,
                       struct ferry_v2v_summary *summary)
{
  double start = now_seconds ();
  struct ferry_target *target;
  const char *staging;
  struct stat st;
  bool recopied = false;
  unsigned tflags = FERRY_TARGET_FOLDER |
    (opts->no_flush ? FERRY_TARGET_NO_SYNC : 0);
  int r;

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
  /* Killed after the rename, before the journal heard of it: the output
   * folder is whole and the working folder gone. */
  if (j && step_done (j, "describe", -1) && !step_done (j, "commit", -1) &&
      lstat (plan->out_dir, &st) == 0 && lstat (j->staging, &st) == -1) {
    if (step_begin (j, "commit", -1) == -1 ||
        step_end (j, "commit", -1, 0, "found done") == -1)
      goto err_nofree;
    summary->seconds = now_seconds () - start;
    return 0;
  }
  target = j ? ferry_target_begin_kept (plan->out_dir, j->staging, tflags)
    : ferry_target_begin (plan->out_dir, NULL, tflags);
  if (target == NULL)
    goto err_nofree;
  staging = ferry_target_path (target);
  if (keep_removed (summary, ferry_target_removed (target)) == -1)
    goto err;

  if (!(j && j->no_copy) &&
      copy_disks (plan, opts, j, staging, summary, &recopied) == -1)
    goto err;
  /* A warm run: rounds until the cutover, then the last delta. */
  if (j && j->sync && (!step_done (j, "sync", -1) || recopied)) {
    if (cancelled (opts)) {
      ferry_error (EINTR, "interrupted");
      goto err;
    }
    if (step_begin (j, "sync", -1) == -1)
      goto err;
    r = j->sync (j->opaque, plan, staging);
    if (step_end (j, "sync", -1, r, NULL) == -1)
      goto err;
  }

  /* The guest, on the copies (convert.c); in a durable run on overlays,
   * so that a kill during it leaves the copies as they were.  A disk
   * copied again lost its conversion: it runs again. */
  if (!step_done (j, "convert", -1) || recopied) {
    if (step_begin (j, "convert", -1) == -1)
      goto err;
    r = v2v_convert_guest (plan, opts, staging, summary, j != NULL);
    if (step_end (j, "convert", -1, r, summary->convert_skipped) == -1)
      goto err;
  }
  if (!step_done (j, "describe", -1)) {
    if (step_begin (j, "describe", -1) == -1)
      goto err;
    r = write_description (plan, opts, staging);
    if (step_end (j, "describe", -1, r, NULL) == -1)
      goto err;
  }
  if (cancelled (opts)) {
    ferry_error (EINTR, "interrupted");
    goto err;
  }
  /* A test run never commits: one that booted already (its job reset
   * without a cutover) waits for the cutover again. */
  if (j && j->test) {
    if (!step_done (j, "verify", -1)) {
      if (step_begin (j, "verify", -1) == -1)
        goto err;
      r = test_boot (plan, j, staging);
      if (step_end (j, "verify", -1, r, NULL) == -1)
        goto err;
    }
    ferry_target_free (target);
    summary->seconds = now_seconds () - start;
    return 1;
  }
  if (step_begin (j, "commit", -1) == -1)
    goto err;
  r = 0;
  if (opts->target == FERRY_V2V_OVA)
    r = remove_packed (plan, staging);
  if (r == 0)
    r = ferry_target_commit (target);
  if (step_end (j, "commit", -1, r, NULL) == -1)
    goto err;
  ferry_target_free (target);
  summary->seconds = now_seconds () - start;
  /* --verify: the output, in place, booted as `ferry verify --boot`
   * would; a failure leaves it there and says so. */
  if (j && j->boot_after && !step_done (j, "boot", -1)) {
    if (step_begin (j, "boot", -1) == -1)
      return -1;
    r = test_boot (plan, j, plan->out_dir);
    if (r == -1)
      ferry_error_prefix ("%s is in place, but its verification failed",
                          plan->out_dir);
    if (step_end (j, "boot", -1, r, NULL) == -1)
      return -1;
  }
  return 0;

 err:
  /* Removes the working folder, unless the journal keeps it. */
  ferry_target_free (target);
 err_nofree:
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

int
ferry_v2v_run (struct ferry_v2v_plan *plan,
               const struct ferry_v2v_options *opts,
               struct ferry_v2v_summary *summary)
{
  return ferry_v2v_run_journal (plan, opts, NULL, summary);
}
