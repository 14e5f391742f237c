/* ferry: new targets, written under a temporary name and committed.
 *
 * A target that ferry makes (an image, or a folder of disks and a
 * description) is never visible under its name until it is complete and
 * durable.  The caller writes it under a hidden temporary name beside the
 * destination; commit makes it whole and gives it its name; anything
 * short of a commit removes it:
 *
 *   t = ferry_target_begin ("out/disk.qcow2", "qcow2", 0);
 *   img = ferry_target_create_image (t, size, options);
 *   ... ferry_copy (src, img, ...) ...
 *   if (ferry_target_commit (t) == -1) ... report; nothing is at DEST ...
 *   ferry_target_free (t);        (removes everything unless committed)
 *
 * A folder target (FERRY_TARGET_FOLDER) is filled by the caller at
 * ferry_target_path; commit syncs every file in it.
 *
 * While a target is pending, every message of the library names DEST
 * (and, for the files an image keeps beside it, their names to be), never
 * the temporary name: the user never asked for it.  Messages never name
 * a command-line option.
 *
 * A process that dies (SIGKILL, a power cut) leaves its temporary name
 * behind.  ferry_target_begin removes, from DEST's folder, those left by
 * processes that are gone (each target holds a lock while it lives) and
 * says what it removed, even when it then fails (an existing DEST): the
 * same command run again after a kill cleans up.  The states a dead writer can leave are listed in
 * the notes at the top of lib/image/target.c.
 */
#ifndef FERRY_TARGET_H
#define FERRY_TARGET_H

#include <stdint.h>

#include <ferry/image.h>

#ifdef __cplusplus
extern "C" {
#endif

struct ferry_target;

/* Flags for ferry_target_begin. */
#define FERRY_TARGET_FOLDER  0x1 /* DEST is a folder the caller fills */
#define FERRY_TARGET_NO_SYNC 0x2 /* commit syncs nothing (cache=unsafe):
                                    after a power cut DEST may exist with
                                    data that never reached the disk */

/* Begin the new target DEST, which must not exist: remove the leftovers
 * of dead ferry processes from DEST's folder (whether DEST exists or
 * not), then reserve a temporary
 * name beside DEST (same folder, so the final rename is atomic and a
 * relative backing file means the same thing).  A folder target's folder
 * is made at once, empty; an image target's image is made by
 * ferry_target_create_image.  FORMAT is the image's driver name (NULL:
 * raw); folders ignore it.  The caller frees it with ferry_target_free(). */
struct ferry_target *ferry_target_begin (const char *dest, const char *format,
                                         unsigned flags);

/* Create the image of an image target under its temporary name, as
 * ferry_image_create does.  The image belongs to the target: the caller
 * writes it, never closes it; commit closes it.  NULL with the error set
 * (nothing left behind). */
struct ferry_image *ferry_target_create_image (struct ferry_target *t,
                                               uint64_t size,
                                               const char *options);

/* The temporary path (a folder target's folder, where the caller puts
 * its files), and DEST as given.  They belong to the target. */
const char *ferry_target_path (const struct ferry_target *t);
const char *ferry_target_dest (const struct ferry_target *t);

/* What ferry_target_begin removed: paths of the leftovers of dead ferry
 * processes, NULL-terminated (empty when there were none).  They belong
 * to the target.  A begin that fails logs them instead, as warnings
 * ("removed PATH, left by a ferry process that is gone"). */
const char *const *ferry_target_removed (const struct ferry_target *t);

/* Complete the target and give it its name: close the image (which writes
 * its tables and footers), fsync every file of it (and a folder target's
 * folder), rename it to DEST without ever replacing anything, fsync
 * DEST's folder.  Every result is checked; if any step fails, nothing is
 * left under DEST (a rename already done is undone by removing DEST) and
 * the caller frees the target, which removes the rest.  0, or -1 with the
 * error set. */
int ferry_target_commit (struct ferry_target *t);

/* A folder target whose working folder outlives its process: a job's,
 * which another process resumes after a pause, a crash or a kill.
 * STAGING is the working folder's path, in DEST's folder (the caller
 * names it and keeps the name in its job, e.g. ".NAME.ferry-job-7": a name
 * that does not end in ".ferry-TAG", so sweepers leave it alone); it is
 * made when missing and taken as it is when it exists.  There is no lock
 * file: whoever holds the job (the job store) is the only writer.  DEST
 * must not exist.  Freed without a commit, the target keeps its folder,
 * unless ferry_target_discard removed it.  Flags as for
 * ferry_target_begin (FERRY_TARGET_FOLDER is implied). */
struct ferry_target *ferry_target_begin_kept (const char *dest,
                                              const char *staging,
                                              unsigned flags);

/* Remove the working folder of a target of ferry_target_begin_kept, with
 * everything in it (a job cancelled or removed).  0, or -1 with the error
 * set. */
int ferry_target_discard (struct ferry_target *t);

/* Remove the working folder STAGING of a kept target that no process
 * has open as one (a job cancelled or removed while nothing runs it).
 * A folder already gone is no error.  0, or -1 with the error set. */
int ferry_target_remove_kept (const char *staging);

/* Free T.  A target that was not committed is removed with everything it
 * made (the image is closed first).  The thread's error is kept, so the
 * caller may report a failure after freeing.  T may be NULL. */
void ferry_target_free (struct ferry_target *t);

#ifdef __cplusplus
}
#endif

#endif /* FERRY_TARGET_H */
