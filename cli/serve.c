/* ferry serve: serve an image over NBD, with nbdkit and the ferry plugin
 * (plugins/nbdkit), until SIGINT or SIGTERM.
 *
 * NOTES
 *
 * 1. The image is opened here first, read-only, and closed again, so a
 *    wrong path or a broken image gets ferry's own message before any
 *    server starts.
 *
 * 2. nbdkit runs in the foreground as our child, with --exit-with-parent
 *    so it never outlives us, and writes its pid file once it listens.
 *    Only then ferry prints the URI that clients use, one line on stdout,
 *    so a script can wait for that line.
 *
 * 3. SIGINT, SIGTERM, SIGHUP and SIGQUIT only set a flag (ferry.c's
 *    handler until nbdkit starts, then serve's own); the main loop passes
 *    SIGTERM on to nbdkit, which finishes the requests in flight and
 *    closes the image (the plugin writes a format's held-back tables
 *    then), and ferry exits 0 after it.  nbdkit gets SIGKILL only when it
 *    has not left STOP_TIMEOUT seconds later.
 *
 * 4. The plugin holds the image open, and so its locks (as QEMU's: see
 *    <ferry/image.h>), from before nbdkit listens until it exits: while
 *    ferry serves an image, qemu-img and QEMU cannot write it, nor read it
 *    while ferry serves it writable.  -U (--force-share, with --readonly
 *    only, as qemu-nbd's) serves an image another process writes.
 *
 * 5. FERRY_NBDKIT names the nbdkit to run and FERRY_NBDKIT_PLUGIN the
 *    plugin; by default nbdkit from PATH, and the plugin beside this
 *    program in the build tree, or where `meson install` put it.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ferry.h"

#define PLUGIN_NAME "nbdkit-ferry-plugin.so"
#define START_TIMEOUT 60       /* seconds for nbdkit to listen */
#define STOP_TIMEOUT 30        /* seconds for nbdkit to leave after SIGTERM */
#define DEFAULT_PORT 10809

static volatile sig_atomic_t stop_signal;

static void
on_signal (int sig)
{
  stop_signal = sig;
}

/* Sleep for MS milliseconds (a signal may cut it short). */
static void
sleep_ms (long ms)
{
  struct timespec ts = { ms / 1000, (ms % 1000) * 1000000 };

  nanosleep (&ts, NULL);
}

/* The plugin to load (note 5); the caller frees it. */
static char *
find_plugin (void)
{
  const char *env = getenv ("FERRY_NBDKIT_PLUGIN");
  char exe[PATH_MAX], *path = NULL;
  ssize_t len;

  if (env && *env)
    return realpath (env, NULL);
  len = readlink ("/proc/self/exe", exe, sizeof exe - 1);
  if (len > 0) {
    exe[len] = '\0';
    if (asprintf (&path, "%s/../plugins/nbdkit/" PLUGIN_NAME,
                  dirname (exe)) == -1)
      return NULL;
    if (access (path, R_OK) == 0) {
      char *real = realpath (path, NULL);
      free (path);
      return real;
    }
    free (path);
  }
  if (access (FERRY_NBDKIT_PLUGIN_INSTALLED, R_OK) == 0)
    return strdup (FERRY_NBDKIT_PLUGIN_INSTALLED);
  return NULL;
}

/* S with every byte that may not stand in a URI path or query as
 * %XX; the caller frees it. */
static char *
uri_escape (const char *s)
{
  char *out = malloc (3 * strlen (s) + 1), *p = out;

  if (out == NULL)
    return NULL;
  for (; *s; s++) {
    unsigned char c = *s;
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
        (c >= '0' && c <= '9') || strchr ("-._~/", c))
      *p++ = c;
    else
      p += sprintf (p, "%%%02X", c);
  }
  *p = '\0';
  return out;
}

/* An absolute version of PATH (made from the current directory); the
 * caller frees it. */
static char *
absolute (const char *path)
{
  char cwd[PATH_MAX], *ret;

  if (path[0] == '/')
    return strdup (path);
  if (getcwd (cwd, sizeof cwd) == NULL ||
      asprintf (&ret, "%s/%s", cwd, path) == -1)
    return NULL;
  return ret;
}

/* Print the URI clients use (note 2). */
static void
print_uri (bool tls, const char *socket, const char *bind, unsigned port,
           const char *export)
{
  char *e = uri_escape (export ? export : ""), *s = NULL;

  if (socket) {
    s = uri_escape (socket);
    printf ("nbd%s+unix:///%s?socket=%s\n", tls ? "s" : "", e ? e : "",
            s ? s : socket);
  }
  else if (bind && strchr (bind, ':'))
    printf ("nbd%s://[%s]:%u/%s\n", tls ? "s" : "", bind, port, e ? e : "");
  else
    printf ("nbd%s://%s:%u/%s\n", tls ? "s" : "", bind ? bind : "localhost",
            port, e ? e : "");
  fflush (stdout);
  free (e);
  free (s);
}

/* Wait for CHILD to exit, up to TIMEOUT seconds; its status in
 * *STATUS.  Returns 0 when it exited, -1 when it is still running. */
static int
wait_child (pid_t child, int *status, int timeout)
{
  double end = time (NULL) + timeout;

  while (time (NULL) <= end) {
    pid_t r = waitpid (child, status, WNOHANG);
    if (r == child)
      return 0;
    if (r == -1 && errno != EINTR)
      return 0;
    sleep_ms (50);
  }
  return -1;
}

/* The end of the server: describe how nbdkit left, 0 when cleanly. */
static int
child_exit_status (int status, bool stopping)
{
  if (WIFEXITED (status) && WEXITSTATUS (status) == 0)
    return 0;
  if (stopping && WIFSIGNALED (status) && WTERMSIG (status) == SIGTERM)
    return 0;
  if (WIFEXITED (status))
    print_message ("serve", "nbdkit exited with status %d%s",
                   WEXITSTATUS (status), stopping ? "" :
                   " (its message is above)");
  else
    print_message ("serve", "nbdkit was killed by signal %d",
                   WTERMSIG (status));
  return 1;
}

static void
usage (FILE *fp)
{
  fprintf (fp,
    "usage: ferry serve [-f FMT] [--port N [--bind ADDR] | --socket PATH]\n"
    "                   [--readonly] [--tls-psk FILE | --tls-certs DIR]\n"
    "                   [--export NAME] [-U] IMAGE\n"
    "  Serve IMAGE (any format ferry opens) over NBD until SIGINT or SIGTERM.\n"
    "  Prints the URI for clients once the server listens.\n"
    "  --port N       TCP port (default 10809), on every address or ADDR\n"
    "  --socket PATH  a Unix socket instead\n"
    "  --readonly     refuse writes; the image is opened read-only\n"
    "  --tls-psk FILE require TLS with the pre-shared keys in FILE (psktool)\n"
    "  --tls-certs DIR require TLS with the X.509 certificates in DIR; clients\n"
    "                 must show a certificate signed by DIR/ca-cert.pem\n"
    "  --export NAME  the export's name (default: \"\"); others are refused\n"
    "  -U, --force-share  with --readonly: serve an image another process\n"
    "                 is writing\n");
}

int
cmd_serve (int argc, char **argv)
{
  static const struct option long_options[] = {
    { "port", required_argument, NULL, 'p' },
    { "bind", required_argument, NULL, 'b' },
    { "socket", required_argument, NULL, 's' },
    { "readonly", no_argument, NULL, 'r' },
    { "tls-psk", required_argument, NULL, 'K' },
    { "tls-certs", required_argument, NULL, 'C' },
    { "export", required_argument, NULL, 'e' },
    { "format", required_argument, NULL, 'f' },
    { "force-share", no_argument, NULL, 'U' },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
  };
  const char *format = NULL, *bind = NULL, *export = NULL;
  const char *tls_psk = NULL, *tls_certs = NULL, *image;
  char *socket = NULL, *plugin = NULL, *image_arg = NULL, *tmpdir = NULL;
  char *pidfile = NULL, *args[32], *opt[8] = { NULL };
  const char *nbdkit;
  struct ferry_image *img;
  struct sigaction sa;
  unsigned long port = 0;
  bool readonly = false, have_port = false, stopping = false, shared = false;
  pid_t child;
  int c, i, n = 0, nopt = 0, status, ret = 1;

  while ((c = getopt_long (argc, argv, "f:p:b:s:re:Uh", long_options,
                           NULL)) != -1) {
    switch (c) {
    case 'f': format = optarg; break;
    case 'p': {
      char *end;
      errno = 0;
      port = strtoul (optarg, &end, 10);
      if (errno || *end || port < 1 || port > 65535) {
        print_message ("serve", "--port %s: expected a port from 1 to 65535",
                       optarg);
        goto out;
      }
      have_port = true;
      break;
    }
    case 'b': bind = optarg; break;
    case 's':
      free (socket);
      socket = absolute (optarg);
      break;
    case 'r': readonly = true; break;
    case 'U': shared = true; break;
    case 'K': tls_psk = optarg; break;
    case 'C': tls_certs = optarg; break;
    case 'e': export = optarg; break;
    case 'h': usage (stdout); ret = 0; goto out;
    default: usage (stderr); goto out;
    }
  }
  if (optind != argc - 1) {
    print_message ("serve", "expected one IMAGE (see ferry serve --help)");
    goto out;
  }
  image = argv[optind];
  if (socket && (have_port || bind)) {
    print_message ("serve", "--socket and --port/--bind: give one of them");
    goto out;
  }
  if (tls_psk && tls_certs) {
    print_message ("serve", "--tls-psk and --tls-certs: give one of them");
    goto out;
  }
  if (tls_psk && access (tls_psk, R_OK) == -1) {
    print_message ("serve", "--tls-psk %s: %s", tls_psk, strerror (errno));
    goto out;
  }
  if (tls_certs && access (tls_certs, R_OK | X_OK) == -1) {
    print_message ("serve", "--tls-certs %s: %s", tls_certs, strerror (errno));
    goto out;
  }
  if (shared && !readonly) {
    print_message ("serve", "-U (--force-share) serves an image others "
                   "write only with --readonly");
    goto out;
  }
  if (!have_port)
    port = DEFAULT_PORT;

  /* Note 1.  A socket where the image is would fail to bind (nbdkit
   * removes nothing), but say so plainly. */
  img = ferry_image_open (image, format, shared ? FERRY_OPEN_SHARED : 0);
  if (img == NULL) {
    print_read_error ("serve");
    goto out;
  }
  if (socket && (c = ferry_image_has_file (img, socket)) != 0) {
    if (c == 1)
      print_message ("serve", "--socket %s: the socket and the image are the "
                     "same file (%s)", socket, ferry_get_error ());
    else
      print_error ("serve");
    ferry_image_close (img);
    goto out;
  }
  ferry_image_close (img);

  plugin = find_plugin ();
  if (plugin == NULL) {
    print_message ("serve", "cannot find " PLUGIN_NAME " (build ferry, or "
                   "set FERRY_NBDKIT_PLUGIN)");
    goto out;
  }
  nbdkit = getenv ("FERRY_NBDKIT");
  if (nbdkit == NULL || *nbdkit == '\0')
    nbdkit = "nbdkit";
  image_arg = ferry_image_is_uri (image) ? strdup (image) : absolute (image);
  if (asprintf (&tmpdir, "%s/ferry-serve.XXXXXX",
                getenv ("TMPDIR") ? getenv ("TMPDIR") : "/tmp") == -1)
    tmpdir = NULL;
  if (image_arg == NULL || tmpdir == NULL || mkdtemp (tmpdir) == NULL ||
      asprintf (&pidfile, "%s/nbdkit.pid", tmpdir) == -1) {
    print_message ("serve", "making a temporary directory: %s",
                   strerror (errno));
    goto out;
  }

  /* The nbdkit command line (note 2). */
  args[n++] = (char *) nbdkit;
  args[n++] = (char *) "--foreground";
  args[n++] = (char *) "--exit-with-parent";
  args[n++] = (char *) "--pidfile";
  args[n++] = pidfile;
  if (readonly)
    args[n++] = (char *) "--readonly";
  if (socket) {
    args[n++] = (char *) "--unix";
    args[n++] = socket;
  }
  else {
    if (asprintf (&opt[nopt++], "--port=%lu", port) == -1)
      goto nomem;
    args[n++] = opt[nopt - 1];
    if (bind) {
      args[n++] = (char *) "--ipaddr";
      args[n++] = (char *) bind;
    }
  }
  if (tls_psk || tls_certs) {
    args[n++] = (char *) "--tls=require";
    /* X.509 without checking the client's certificate would let anyone
     * who can connect read and write the image: the client must show a
     * certificate of the CA in DIR (qemu-nbd's default, too). */
    if (tls_certs)
      args[n++] = (char *) "--tls-verify-peer";
    if (asprintf (&opt[nopt++], tls_psk ? "--tls-psk=%s"
                  : "--tls-certificates=%s", tls_psk ? tls_psk : tls_certs) == -1)
      goto nomem;
    args[n++] = opt[nopt - 1];
  }
  args[n++] = plugin;
  if (asprintf (&opt[nopt++], "file=%s", image_arg) == -1)
    goto nomem;
  args[n++] = opt[nopt - 1];
  if (format) {
    if (asprintf (&opt[nopt++], "format=%s", format) == -1)
      goto nomem;
    args[n++] = opt[nopt - 1];
  }
  if (readonly)
    args[n++] = (char *) "readonly=true";
  if (shared)
    args[n++] = (char *) "shared=true";
  if (export) {
    if (asprintf (&opt[nopt++], "export=%s", export) == -1)
      goto nomem;
    args[n++] = opt[nopt - 1];
  }
  args[n] = NULL;

  /* Note 3: only a flag, looked at by the loops below (and one that came
   * while the image was opened counts too). */
  memset (&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset (&sa.sa_mask);
  sigaction (SIGINT, &sa, NULL);
  sigaction (SIGTERM, &sa, NULL);
  sigaction (SIGHUP, &sa, NULL);
  sigaction (SIGQUIT, &sa, NULL);
  signal (SIGPIPE, SIG_IGN);
  if (cli_stop)
    stop_signal = cli_stop;

  child = fork ();
  if (child == -1) {
    print_message ("serve", "fork: %s", strerror (errno));
    goto out;
  }
  if (child == 0) {
    signal (SIGINT, SIG_DFL);
    signal (SIGTERM, SIG_DFL);
    signal (SIGHUP, SIG_DFL);
    signal (SIGPIPE, SIG_DFL);
    execvp (nbdkit, args);
    fprintf (stderr, "ferry serve: running %s: %s\n", nbdkit,
             strerror (errno));
    _exit (127);
  }

  /* Wait until nbdkit listens (its pid file appears), dies, or we are
   * told to stop. */
  for (i = 0; ; i++) {
    pid_t r;

    if (access (pidfile, F_OK) == 0)
      break;
    r = waitpid (child, &status, WNOHANG);
    if (r == child) {
      if (WIFEXITED (status) && WEXITSTATUS (status) == 127)
        print_message ("serve", "could not run %s (install nbdkit)", nbdkit);
      else
        child_exit_status (status, false);
      goto out;
    }
    if (stop_signal || i > START_TIMEOUT * 20) {
      if (!stop_signal)
        print_message ("serve", "nbdkit did not listen within %d seconds",
                       START_TIMEOUT);
      kill (child, SIGTERM);
      if (wait_child (child, &status, STOP_TIMEOUT) == -1) {
        kill (child, SIGKILL);
        waitpid (child, &status, 0);
      }
      ret = stop_signal ? 0 : 1;
      goto out;
    }
    sleep_ms (50);
  }
  print_uri (tls_psk || tls_certs, socket, bind, port, export);

  /* Serve until a signal, or until nbdkit leaves by itself. */
  for (;;) {
    pid_t r = waitpid (child, &status, WNOHANG);

    if (r == child)
      break;
    if (stop_signal && !stopping) {
      stopping = true;
      kill (child, SIGTERM);
      if (wait_child (child, &status, STOP_TIMEOUT) == -1) {
        print_message ("serve", "nbdkit did not stop within %d seconds; "
                       "killing it", STOP_TIMEOUT);
        kill (child, SIGKILL);
        waitpid (child, &status, 0);
      }
      break;
    }
    sleep_ms (50);
  }
  ret = child_exit_status (status, stopping);
  goto out;

 nomem:
  print_message ("serve", "out of memory");
 out:
  if (pidfile)
    unlink (pidfile);
  if (tmpdir)
    rmdir (tmpdir);
  for (i = 0; i < nopt; i++)
    free (opt[i]);
  free (pidfile);
  free (tmpdir);
  free (image_arg);
  free (plugin);
  free (socket);
  return ret;
}
