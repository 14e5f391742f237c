/* Unit tests for lib/guest's text rewrites (linux-text.c): fstab, kernel
 * command lines in GRUB 2, GRUB legacy and extlinux files, network files.
 * The inputs are written as distributions ship them; the map stands in
 * for the appliance (it knows /dev/sda1, /dev/sda2, /dev/hda1, /dev/xvdb1). */
#include <errno.h>
#include <regex.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "guest/internal.h"

static char *
fake_map (const char *dev, void *opaque)
{
  int *calls = opaque;

  if (calls)
    (*calls)++;
  if (strcmp (dev, "/dev/sda1") == 0 || strcmp (dev, "/dev/hda1") == 0)
    return strdup ("UUID=1111-aaaa");
  if (strcmp (dev, "/dev/sda2") == 0)
    return strdup ("UUID=2222-bbbb");
  if (strcmp (dev, "/dev/xvdb1") == 0)
    return strdup ("LABEL=data");
  return NULL;
}

static void
test_bus_bound (void **state)
{
  assert_true (guest_is_bus_bound_device ("/dev/sda"));
  assert_true (guest_is_bus_bound_device ("/dev/sda1"));
  assert_true (guest_is_bus_bound_device ("/dev/hdb12"));
  assert_true (guest_is_bus_bound_device ("/dev/xvdc3"));
  assert_true (guest_is_bus_bound_device ("/dev/vdaa1"));
  assert_true (guest_is_bus_bound_device ("/dev/disk/by-path/pci-0000:00:10.0-scsi-0:0:0:0-part1"));
  assert_false (guest_is_bus_bound_device ("/dev/mapper/vg-root"));
  assert_false (guest_is_bus_bound_device ("/dev/vg/root"));
  assert_false (guest_is_bus_bound_device ("UUID=1234"));
  assert_false (guest_is_bus_bound_device ("/dev/sda1x"));
  assert_false (guest_is_bus_bound_device ("/dev/sr0"));
  assert_false (guest_is_bus_bound_device ("/dev/nvme0n1p1"));
  assert_false (guest_is_bus_bound_device ("tmpfs"));
}

static void
test_naming (void **state)
{
  assert_int_equal (guest_naming_of ("/dev/sda1"), FERRY_GUEST_NAMING_DEVICE);
  assert_int_equal (guest_naming_of ("UUID=12"), FERRY_GUEST_NAMING_UUID);
  assert_int_equal (guest_naming_of ("/dev/disk/by-uuid/12"), FERRY_GUEST_NAMING_UUID);
  assert_int_equal (guest_naming_of ("LABEL=root"), FERRY_GUEST_NAMING_LABEL);
  assert_int_equal (guest_naming_of ("PARTUUID=ab-01"), FERRY_GUEST_NAMING_PARTUUID);
  assert_int_equal (guest_naming_of ("/dev/mapper/vg-root"), FERRY_GUEST_NAMING_LVM);
  assert_int_equal (guest_naming_of ("/dev/VolGroup00/LogVol00"), FERRY_GUEST_NAMING_LVM);
  assert_int_equal (guest_naming_of ("/dev/disk/by-id/ata-X"), FERRY_GUEST_NAMING_PATH);
  assert_int_equal (guest_naming_of ("proc"), FERRY_GUEST_NAMING_OTHER);
  assert_string_equal (ferry_guest_naming_name (FERRY_GUEST_NAMING_UUID), "uuid");
}

/* fstab: only the first field of mapped lines changes; comments, other
 * entries and the spacing stay. */
static void
test_fstab (void **state)
{
  const char *in =
    "# /etc/fstab: static file system information.\n"
    "/dev/sda1  /      ext4 errors=remount-ro 0 1\n"
    "\t/dev/sda2\tnone swap sw 0 0\n"
    "UUID=9999 /home ext4 defaults 0 2\n"
    "/dev/mapper/vg-var /var xfs defaults 0 0\n"
    "# /dev/sda1 in a comment stays\n"
    "/dev/sdc1 /mnt ext4 noauto 0 0\n"
    "proc /proc proc defaults 0 0";
  const char *want =
    "# /etc/fstab: static file system information.\n"
    "UUID=1111-aaaa  /      ext4 errors=remount-ro 0 1\n"
    "\tUUID=2222-bbbb\tnone swap sw 0 0\n"
    "UUID=9999 /home ext4 defaults 0 2\n"
    "/dev/mapper/vg-var /var xfs defaults 0 0\n"
    "# /dev/sda1 in a comment stays\n"
    "/dev/sdc1 /mnt ext4 noauto 0 0\n"
    "proc /proc proc defaults 0 0";
  size_t changed;
  char *out = guest_rewrite_fstab (in, fake_map, NULL, &changed);

  assert_non_null (out);
  assert_string_equal (out, want);
  assert_int_equal (changed, 2);
  free (out);

  out = guest_rewrite_fstab ("", fake_map, NULL, &changed);
  assert_non_null (out);
  assert_string_equal (out, "");
  assert_int_equal (changed, 0);
  free (out);
}

static void
test_parse_fstab (void **state)
{
  struct ferry_guest_fstab_entry *e;
  size_t n, i;

  assert_int_equal (guest_parse_fstab ("# c\n/dev/sda1 / ext4 errors=remount-ro 0 1\n\n"
                                       "UUID=12 none swap sw\n", &e, &n), 0);
  assert_int_equal (n, 2);
  assert_string_equal (e[0].spec, "/dev/sda1");
  assert_string_equal (e[0].mountpoint, "/");
  assert_string_equal (e[0].type, "ext4");
  assert_string_equal (e[0].options, "errors=remount-ro");
  assert_int_equal (e[0].naming, FERRY_GUEST_NAMING_DEVICE);
  assert_int_equal (e[1].naming, FERRY_GUEST_NAMING_UUID);
  for (i = 0; i < n; i++) {
    free (e[i].spec);
    free (e[i].mountpoint);
    free (e[i].type);
    free (e[i].options);
  }
  free (e);
}

/* GRUB 2 as update-grub writes it with GRUB_DISABLE_LINUX_UUID=true. */
static void
test_cmdline_grub2 (void **state)
{
  const char *in =
    "menuentry 'Debian GNU/Linux' {\n"
    "\tsearch --no-floppy --fs-uuid --set=root 1111-aaaa\n"
    "\tlinux\t/boot/vmlinuz-6.1.0-21-amd64 root=/dev/sda1 ro  console=ttyS0 resume=/dev/sda2\n"
    "\tinitrd\t/boot/initrd.img-6.1.0-21-amd64\n"
    "}\n"
    "\tlinux /vmlinuz root=${linux_root_device} ro\n"
    "\tlinux /vmlinuz noroot=/dev/sda1\n";
  const char *want =
    "menuentry 'Debian GNU/Linux' {\n"
    "\tsearch --no-floppy --fs-uuid --set=root 1111-aaaa\n"
    "\tlinux\t/boot/vmlinuz-6.1.0-21-amd64 root=UUID=1111-aaaa ro  console=ttyS0 resume=UUID=2222-bbbb\n"
    "\tinitrd\t/boot/initrd.img-6.1.0-21-amd64\n"
    "}\n"
    "\tlinux /vmlinuz root=${linux_root_device} ro\n"
    "\tlinux /vmlinuz noroot=/dev/sda1\n";
  size_t changed;
  char *out = guest_rewrite_cmdline_devices (in, fake_map, NULL, &changed);

  assert_non_null (out);
  assert_string_equal (out, want);
  assert_int_equal (changed, 2);
  free (out);
}

/* GRUB legacy (RHEL 5/6 menu.lst) and extlinux. */
static void
test_cmdline_legacy_extlinux (void **state)
{
  const char *legacy =
    "default=0\ntimeout=5\n"
    "title CentOS (2.6.32-754.el6.x86_64)\n"
    "\troot (hd0,0)\n"
    "\tkernel /vmlinuz-2.6.32-754.el6.x86_64 ro root=/dev/hda1 rhgb quiet\n"
    "\tinitrd /initramfs-2.6.32-754.el6.x86_64.img\n";
  const char *extlinux =
    "DEFAULT linux\nLABEL linux\n  KERNEL /boot/vmlinuz\n"
    "  APPEND root=/dev/xvdb1 console=ttyS0 RESUME=/dev/sda2\n";
  size_t changed;
  char *out = guest_rewrite_cmdline_devices (legacy, fake_map, NULL, &changed);

  assert_non_null (out);
  assert_non_null (strstr (out, "ro root=UUID=1111-aaaa rhgb quiet\n"));
  assert_non_null (strstr (out, "\troot (hd0,0)\n"));
  assert_int_equal (changed, 1);
  free (out);
  out = guest_rewrite_cmdline_devices (extlinux, fake_map, NULL, &changed);
  assert_non_null (out);
  assert_non_null (strstr (out, "APPEND root=LABEL=data console=ttyS0 RESUME=UUID=2222-bbbb\n"));
  assert_int_equal (changed, 2);
  free (out);
}

/* /etc/default/grub: quoted values, and GRUB_DISABLE_LINUX_UUID. */
static void
test_grub_default (void **state)
{
  const char *in =
    "GRUB_DEFAULT=0\n"
    "GRUB_CMDLINE_LINUX=\"console=ttyS0 resume=/dev/sda2\"\n"
    "GRUB_DISABLE_LINUX_UUID=true\n"
    "#GRUB_DISABLE_LINUX_UUID=true\n";
  size_t changed;
  char *a = guest_rewrite_cmdline_devices (in, fake_map, NULL, &changed), *b;

  assert_non_null (a);
  assert_int_equal (changed, 1);
  assert_non_null (strstr (a, "\"console=ttyS0 resume=UUID=2222-bbbb\"\n"));
  b = guest_grub_default_enable_uuid (a, &changed);
  assert_non_null (b);
  assert_int_equal (changed, 1);
  assert_null (strstr (b, "\nGRUB_DISABLE_LINUX_UUID=true"));
  assert_non_null (strstr (b, "#GRUB_DISABLE_LINUX_UUID=true\n#GRUB_DISABLE_LINUX_UUID=true\n"));
  free (a);
  free (b);
}

static void
test_cmdline_devices (void **state)
{
  string_vector v = empty_vector;

  assert_int_equal (guest_cmdline_devices (
    "linux /vmlinuz root=/dev/sda1 ro resume=UUID=12\n"
    "linux /vmlinuz root=/dev/sda1 single\n"
    "linux /vmlinuz root=$root\n", &v), 0);
  assert_int_equal (v.len, 2);
  assert_string_equal (v.ptr[0], "/dev/sda1");
  assert_string_equal (v.ptr[1], "UUID=12");
  string_vector_free (&v);
}

static void
check_names (const char *kind, const char *text, const char *const *want,
             size_t nr_macs)
{
  string_vector names = empty_vector, macs = empty_vector;
  size_t i;

  assert_int_equal (guest_parse_netconf (kind, text, &names, &macs), 0);
  for (i = 0; want[i]; i++) {
    assert_true (i < names.len);
    assert_string_equal (names.ptr[i], want[i]);
  }
  assert_int_equal (names.len, i);
  assert_int_equal (macs.len, nr_macs);
  string_vector_free (&names);
  string_vector_free (&macs);
}

static void
test_netconf (void **state)
{
  static const char *const ifupdown[] = { "ens33", "eth1", NULL };
  static const char *const netplan[] = { "ens160", "eth0", NULL };
  static const char *const ifcfg[] = { "eth0", NULL };
  static const char *const nm[] = { "ens192", NULL };
  static const char *const udev[] = { "eth0", NULL };

  check_names ("ifupdown",
               "source /etc/network/interfaces.d/*\nauto lo\niface lo inet loopback\n"
               "allow-hotplug ens33\niface ens33 inet static\n\taddress 10.0.2.15/24\n"
               "auto eth1 lo\n# iface eth9 inet dhcp\n", ifupdown, 0);
  check_names ("netplan",
               "network:\n  version: 2\n  ethernets:\n    ens160:\n      dhcp4: true\n"
               "    eth0:\n      match:\n        macaddress: 00:50:56:AB:CD:EF\n"
               "        driver: vmxnet3\n  bridges:\n    br0:\n      dhcp4: true\n",
               netplan, 1);
  check_names ("ifcfg", "DEVICE=\"eth0\"\nHWADDR=00:50:56:9b:5f:0d\nONBOOT=yes\n", ifcfg, 1);
  check_names ("networkmanager", "[connection]\nid=Wired\ninterface-name=ens192\n", nm, 0);
  check_names ("udev-rules",
               "SUBSYSTEM==\"net\", ACTION==\"add\", DRIVERS==\"?*\", "
               "ATTR{address}==\"00:0c:29:12:34:56\", NAME=\"eth0\"\n", udev, 1);
}

static void
test_driver_match (void **state)
{
  size_t changed;
  char *out = guest_rewrite_driver_match ("netplan",
    "    eth0:\n      match:\n        driver: vmxnet3\n        driver: e1000e\n"
    "        driver: virtio_net\n", &changed);

  assert_non_null (out);
  assert_int_equal (changed, 2);
  assert_string_equal (out, "    eth0:\n      match:\n        driver: virtio_net\n"
                       "        driver: virtio_net\n        driver: virtio_net\n");
  free (out);
  out = guest_rewrite_driver_match ("udev-rules",
    "SUBSYSTEM==\"net\", DRIVERS==\"vmxnet3\", NAME=\"eth0\"\n", &changed);
  assert_non_null (out);
  assert_int_equal (changed, 1);
  assert_non_null (strstr (out, "DRIVERS==\"virtio_net\""));
  free (out);
}

static void
test_positional (void **state)
{
  assert_true (guest_is_positional_ifname ("eth0"));
  assert_true (guest_is_positional_ifname ("ens33"));
  assert_true (guest_is_positional_ifname ("enp2s1"));
  assert_true (guest_is_positional_ifname ("eno1"));
  assert_false (guest_is_positional_ifname ("enx005056abcdef"));
  assert_false (guest_is_positional_ifname ("lan0"));
  assert_false (guest_is_positional_ifname ("ethx"));
  assert_false (guest_is_positional_ifname ("eth"));
}

/* The console: escape sequences and carriage returns dropped, a login
 * prompt found without its line end, repeated lines counted, failures
 * recognised. */
static void
test_console (void **state)
{
  struct guest_console c = { 0 };
  regex_t re;
  const char *reason = NULL;
  char *matched = NULL, **lines;
  const char boot[] =
    "[  OK  ] \033[0;32mStarted\033[0m getty\r\n"
    "wait\nwait\nwait\n"
    "Debian GNU/Linux 12 ferry-debian12 ttyS0\r\n\r\n"
    "ferry-debian12 login: ";
  size_t i;

  assert_int_equal (regcomp (&re, "[A-Za-z0-9_.-]+ login:", REG_EXTENDED | REG_NOSUB), 0);
  /* Byte by byte, as the worst pipe would deliver it. */
  for (i = 0; i < sizeof boot - 1; i++) {
    int v = guest_console_feed (&c, boot + i, 1, &re, NULL, NULL, &reason, &matched);
    if (i < sizeof boot - 3)
      assert_int_equal (v, 0);
    else if (v) {
      assert_int_equal (v, 1);
      break;
    }
  }
  assert_non_null (matched);
  assert_string_equal (matched, "ferry-debian12 login:");
  free (matched);
  matched = NULL;
  lines = guest_console_finish (&c);
  assert_non_null (lines);
  assert_string_equal (lines[0], "[  OK  ] Started getty");
  assert_string_equal (lines[1], "wait  [3 times]");
  assert_string_equal (lines[2], "Debian GNU/Linux 12 ferry-debian12 ttyS0");
  guest_free_strings (lines);

  assert_int_equal (guest_console_feed (&c, "Begin: Waiting for root file system ... ", 40,
                                        &re, NULL, NULL, &reason, &matched), 0);
  assert_true (c.waiting_root);
  assert_int_equal (guest_console_feed (&c, "\nGave up waiting for root file system device.\n", 47,
                                        &re, NULL, NULL, &reason, &matched), -1);
  assert_string_equal (reason, "the initramfs did not find the root device");
  free (matched);
  guest_free_strings (guest_console_finish (&c));
  regfree (&re);
}

/* A failure is judged on its whole line, however the reads cut it: the
 * report then has the panic's reason.  A partial line that stops growing
 * (the console goes quiet) is judged as it is. */
static void
test_console_partial_failure (void **state)
{
  struct guest_console c = { 0 };
  regex_t re;
  const char *reason = NULL;
  char *matched = NULL;
  const char panic[] = "Kernel panic - not syncing: VFS: Unable to mount root fs\r\n";
  const char hung[] = "Kernel panic - not syncing: Attempted to kill init!";

  assert_int_equal (regcomp (&re, "[A-Za-z0-9_.-]+ login:", REG_EXTENDED | REG_NOSUB), 0);
  assert_int_equal (guest_console_feed (&c, panic, 30, &re, NULL, NULL,
                                        &reason, &matched), 0);
  assert_null (matched);
  assert_int_equal (guest_console_idle (&c, &re, NULL, NULL, &reason, &matched), -1);
  assert_string_equal (matched, "Kernel panic - not syncing: VF");
  free (matched);
  matched = NULL;
  guest_free_strings (guest_console_finish (&c));

  assert_int_equal (guest_console_feed (&c, panic, 30, &re, NULL, NULL,
                                        &reason, &matched), 0);
  assert_int_equal (guest_console_feed (&c, panic + 30, sizeof panic - 31, &re,
                                        NULL, NULL, &reason, &matched), -1);
  assert_string_equal (reason, "kernel panic");
  assert_string_equal (matched, "Kernel panic - not syncing: VFS: Unable to mount root fs");
  free (matched);
  matched = NULL;
  guest_free_strings (guest_console_finish (&c));

  /* No line end ever: quiet, so whole. */
  assert_int_equal (guest_console_feed (&c, hung, sizeof hung - 1, &re, NULL, NULL,
                                        &reason, &matched), 0);
  assert_int_equal (guest_console_idle (&c, &re, NULL, NULL, &reason, &matched), -1);
  assert_string_equal (matched, hung);
  free (matched);
  matched = NULL;
  /* Nothing pending: nothing to judge. */
  assert_int_equal (guest_console_idle (&c, &re, NULL, NULL, &reason, &matched), 0);
  assert_null (matched);
  guest_free_strings (guest_console_finish (&c));
  regfree (&re);
}

/* Linux's reports of a stuck CPU are counted on whole lines, in every
 * wording verify.c acts on, the last kept (cut to fit); lines that only
 * mention the watchdog or RCU are not such a report. */
static void
test_console_cpu_stall (void **state)
{
  struct guest_console c = { 0 };
  regex_t re;
  const char *reason = NULL;
  char *matched = NULL;
  static const char *const reports[] = {
    "[   22.104181] watchdog: BUG: soft lockup - CPU#0 stuck for 22s! [swapper/0:1]",
    "BUG: soft lockup - CPU#1 stuck for 67s! [kworker/1:1:52]",
    "[   30.000001] NMI watchdog: Watchdog detected hard LOCKUP on cpu 1",
    "[   43.118002] rcu: INFO: rcu_sched detected stalls on CPUs/tasks:",
    "[   43.118002] rcu: INFO: rcu_sched self-detected stall on CPU",
    "INFO: rcu_preempt detected stalls on CPUs/tasks:",
    "rcu: INFO: rcu_preempt self-detected stall on CPU",
    ("rcu: INFO: rcu_sched detected expedited stalls on CPUs/tasks: "
     "{ 0-...D 1-...D 2-...D 3-...D 4-...D 5-...D 6-...D 7-...D } 21002 "
     "jiffies s: 61 root: 0xff/."),
  };
  static const char *const others[] = {
    "[    0.112000] NMI watchdog: Enabled. Permanently consumes one hw-PMU counter.",
    "[   43.118100] rcu: rcu_sched kthread starved for 21002 jiffies! g-1079 f0x0",
    "[    1.000000] rcu: Hierarchical RCU implementation.",
    "soft lockup detector enabled",
  };
  char line[2048];
  size_t i;

  assert_int_equal (regcomp (&re, "[A-Za-z0-9_.-]+ login:", REG_EXTENDED | REG_NOSUB), 0);
  for (i = 0; i < sizeof others / sizeof others[0]; i++) {
    snprintf (line, sizeof line, "%s\r\n", others[i]);
    assert_int_equal (guest_console_feed (&c, line, strlen (line), &re, NULL,
                                          NULL, &reason, &matched), 0);
  }
  assert_int_equal (c.cpu_stalls, 0);
  for (i = 0; i < sizeof reports / sizeof reports[0]; i++) {
    /* Not until the line is whole. */
    assert_int_equal (guest_console_feed (&c, reports[i], strlen (reports[i]),
                                          &re, NULL, NULL, &reason, &matched), 0);
    assert_int_equal (c.cpu_stalls, i);
    assert_int_equal (guest_console_feed (&c, "\r\n", 2, &re, NULL, NULL,
                                          &reason, &matched), 0);
    assert_int_equal (c.cpu_stalls, i + 1);
    assert_null (matched);
  }
  /* The last report, cut to GUEST_CONSOLE_CPU_STALL_MAX - 1 bytes. */
  assert_int_equal (strlen (c.cpu_stall), GUEST_CONSOLE_CPU_STALL_MAX - 1);
  assert_memory_equal (c.cpu_stall, reports[7], GUEST_CONSOLE_CPU_STALL_MAX - 1);
  guest_free_strings (guest_console_finish (&c));
  regfree (&re);
}

/* The last line shown, for the report of a stalled boot: the pending
 * partial line first, else the last complete one, blank lines skipped. */
static void
test_console_last_line (void **state)
{
  struct guest_console c = { 0 };
  regex_t re;
  const char *reason = NULL;
  char *matched = NULL;

  assert_int_equal (regcomp (&re, "[A-Za-z0-9_.-]+ login:", REG_EXTENDED | REG_NOSUB), 0);
  assert_null (guest_console_last_line (&c));
  assert_int_equal (guest_console_feed (&c, "\r\n  \r\n", 6, &re, NULL, NULL,
                                        &reason, &matched), 0);
  assert_null (guest_console_last_line (&c));
  assert_int_equal (guest_console_feed (&c, "Booting Linux...\r\n\r\n\t\n", 22, &re,
                                        NULL, NULL, &reason, &matched), 0);
  assert_string_equal (guest_console_last_line (&c), "Booting Linux...");
  assert_int_equal (guest_console_feed (&c, "\033[2J[    0.000] Linux ver", 25, &re,
                                        NULL, NULL, &reason, &matched), 0);
  assert_string_equal (guest_console_last_line (&c), "[    0.000] Linux ver");
  assert_null (matched);
  guest_free_strings (guest_console_finish (&c));
  regfree (&re);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_bus_bound),
    cmocka_unit_test (test_naming),
    cmocka_unit_test (test_fstab),
    cmocka_unit_test (test_parse_fstab),
    cmocka_unit_test (test_cmdline_grub2),
    cmocka_unit_test (test_cmdline_legacy_extlinux),
    cmocka_unit_test (test_grub_default),
    cmocka_unit_test (test_cmdline_devices),
    cmocka_unit_test (test_netconf),
    cmocka_unit_test (test_driver_match),
    cmocka_unit_test (test_positional),
    cmocka_unit_test (test_console),
    cmocka_unit_test (test_console_partial_failure),
    cmocka_unit_test (test_console_last_line),
    cmocka_unit_test (test_console_cpu_stall),
  };
  return cmocka_run_group_tests (tests, NULL, NULL);
}
