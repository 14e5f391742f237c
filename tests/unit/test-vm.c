/* Unit tests for lib/vm: the corners of the readers that the shell tests
 * reach only by luck.
 *
 * - VMX: "|22" escapes, MAC addresses written three ways, a bad MAC and
 *   a bad CPU count refused with messages that say which key;
 * - OVF: capacity and memory units (byte * 2^N, GigaBytes, MegaBytes),
 *   an unknown unit, a chunked file, a disk whose file is not listed;
 * - manifests: ovftool's and VirtualBox's spacing, upper-case hex, an
 *   unknown algorithm, a digest of the wrong length;
 * - tar headers made here byte by byte: a base-256 size, a checksum
 *   computed over signed bytes, a pax path, an archive without its
 *   end-of-archive blocks;
 * - the libvirt domain and the QEMU script written for a VM, read back
 *   (what `verify --boot` boots): disks with their paths, formats and
 *   buses, the SCSI controller, NICs, memory, CPUs, firmware; and what
 *   they refuse.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#define SCRATCH_PREFIX "ferry-test-vm"
#include "scratch-dir.h"

#include <ferry/error.h>
#include <ferry/vm.h>

/* Read the VMX TEXT. */
static struct ferry_vm *
vmx (const char *text)
{
  return ferry_vm_read_vmx ("t.vmx", NULL, text, strlen (text));
}

static void
test_vmx_values (void **state)
{
  struct ferry_vm *vm = vmx (
    "displayName = \"a|22quoted|22 name\"\n"
    "# a comment\n"
    "guestOS = \"rhel8-64\"\n"
    "numvcpus = \"6\"\n"
    "cpuid.coresPerSocket = \"3\"\n"
    "ethernet0.present = \"TRUE\"\n"
    "ethernet0.addressType = \"static\"\n"
    "ethernet0.address = \"00-50-56-AA-BB-CC\"\n"
    "ethernet1.present = \"TRUE\"\n"
    "ethernet1.generatedAddress = \"00:0C:29:01:02:03\"\n"
    "ethernet2.present = \"FALSE\"\n"
    "ethernet2.generatedAddress = \"00:0c:29:ff:ff:ff\"\n");

  assert_non_null (vm);
  assert_string_equal (vm->name, "a\"quoted\" name");
  assert_int_equal (vm->vcpus, 6);
  assert_int_equal (vm->sockets, 2);
  assert_int_equal (vm->cores, 3);
  assert_int_equal (vm->nr_nics, 2);
  assert_string_equal (vm->nics[0].mac, "00:50:56:aa:bb:cc");
  assert_string_equal (vm->nics[1].mac, "00:0c:29:01:02:03");
  ferry_vm_free (vm);

  assert_null (vmx ("displayName = \"x\"\nethernet0.present = \"TRUE\"\n"
                    "ethernet0.generatedAddress = \"00:0c:29:zz:00:00\"\n"));
  assert_string_equal (ferry_get_error (), "t.vmx: ethernet0: "
                       "'00:0c:29:zz:00:00' is not a MAC address");
  assert_null (vmx ("displayName = \"x\"\nnumvcpus = \"0\"\n"));
  assert_string_equal (ferry_get_error (), "t.vmx: numvcpus '0' is not a "
                       "CPU count");
  assert_null (vmx ("displayName = \"x\"\nthis line has no equals sign\n"));
  assert_string_equal (ferry_get_error (), "t.vmx: line 2: not of the form "
                       "key = \"value\"");
}

/* An OVF with one disk of CAPACITY in UNITS, memory MEM in MEMUNITS, and
 * FILEATTRS on its File. */
static struct ferry_vm *
ovf (const char *capacity, const char *units, const char *mem,
     const char *memunits, const char *fileattrs)
{
  char *text;
  struct ferry_vm *vm;
  int n = asprintf (&text,
    "<?xml version='1.0'?>\n"
    "<Envelope xmlns='http://schemas.dmtf.org/ovf/envelope/1' "
    "xmlns:ovf='http://schemas.dmtf.org/ovf/envelope/1' "
    "xmlns:rasd='http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/"
    "CIM_ResourceAllocationSettingData'>\n"
    "<References><File ovf:href='d.vmdk' ovf:id='f1' %s/></References>\n"
    "<DiskSection><Info/><Disk ovf:diskId='d1' ovf:fileRef='f1' "
    "ovf:capacity='%s' ovf:capacityAllocationUnits='%s'/></DiskSection>\n"
    "<VirtualSystem ovf:id='vs'><Info/><VirtualHardwareSection><Info/>\n"
    "<Item><rasd:AllocationUnits>%s</rasd:AllocationUnits>"
    "<rasd:InstanceID>1</rasd:InstanceID><rasd:ResourceType>4"
    "</rasd:ResourceType><rasd:VirtualQuantity>%s</rasd:VirtualQuantity>"
    "</Item>\n"
    "</VirtualHardwareSection></VirtualSystem></Envelope>\n",
    fileattrs, capacity, units, memunits, mem);

  assert_true (n > 0);
  vm = ferry_vm_read_ovf ("t.ovf", NULL, text, n);
  free (text);
  return vm;
}

static void
test_ovf_units (void **state)
{
  struct ferry_vm *vm;

  vm = ovf ("3", "byte * 2^30", "1536", "MegaBytes", "");
  assert_non_null (vm);
  assert_int_equal (vm->disks[0].capacity, 3ull << 30);
  assert_int_equal (vm->memory, 1536ull << 20);
  assert_string_equal (vm->name, "vs");
  ferry_vm_free (vm);

  vm = ovf ("2", "GigaBytes", "4", "byte*2^30", "ovf:compression='gzip'");
  assert_non_null (vm);
  assert_int_equal (vm->disks[0].capacity, 2ull << 30);
  assert_int_equal (vm->memory, 4ull << 30);
  assert_int_equal (vm->disks[0].compression, FERRY_VM_COMPRESSION_GZIP);
  ferry_vm_free (vm);

  assert_null (ovf ("1", "furlongs", "1", "MegaBytes", ""));
  assert_string_equal (ferry_get_error (), "t.ovf: DiskSection: disk d1: "
                       "unknown capacityAllocationUnits 'furlongs'");
  assert_null (ovf ("1", "byte", "1", "MegaBytes", "ovf:chunkSize='1024'"));
  assert_int_equal (ferry_get_errno (), ENOTSUP);
  assert_string_equal (ferry_get_error (), "t.ovf: References: file f1 is "
                       "split in chunks (ovf:chunkSize), which ferry does "
                       "not read");
  assert_null (ovf ("1", "byte", "1", "MegaBytes", "ovf:compression='xz'"));
  assert_string_equal (ferry_get_error (), "t.ovf: References: file f1: "
                       "compression 'xz' (ferry reads gzip)");
  assert_null (ovf ("99999999999999999999", "byte * 2^30", "1", "MegaBytes",
                    ""));
  assert_string_equal (ferry_get_error (), "t.ovf: DiskSection: disk d1: "
                       "capacity 99999999999999999999 is out of range");
  /* In range, but not once multiplied by the unit. */
  assert_null (ovf ("17179869184", "byte * 2^40", "1", "MegaBytes", ""));
  assert_string_equal (ferry_get_error (), "t.ovf: DiskSection: disk d1: "
                       "capacity 17179869184 of 'byte * 2^40' is out of "
                       "range");
}

/* Write NAME in the scratch folder with TEXT. */
static void
write_file (const char *name, const char *text)
{
  char path[300];
  FILE *f = fopen (tmp_path (path, sizeof path, name), "w");

  assert_non_null (f);
  fputs (text, f);
  fclose (f);
}

static void
test_manifests (void **state)
{
  static const char ovf_text[] =
    "<Envelope xmlns='http://schemas.dmtf.org/ovf/envelope/1'>"
    "<VirtualSystem ovf:id='m' xmlns:ovf='http://schemas.dmtf.org/ovf/"
    "envelope/1'><VirtualHardwareSection/></VirtualSystem></Envelope>\n";
  char path[300];
  struct ferry_vm *vm;

  write_file ("m.ovf", ovf_text);
  write_file ("m.mf",
              "SHA1(m.ovf)= 0123456789ABCDEF0123456789abcdef01234567\n"
              "SHA256 (disk one.vmdk) = "
              "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\r\n"
              "\n");
  snprintf (path, sizeof path, "%s/m.ovf", scratch_dir);
  vm = ferry_vm_read (path);
  assert_non_null (vm);
  assert_int_equal (vm->nr_manifest_entries, 2);
  assert_string_equal (vm->manifest_entries[0].algorithm, "SHA1");
  assert_string_equal (vm->manifest_entries[0].digest,
                       "0123456789abcdef0123456789abcdef01234567");
  assert_string_equal (vm->manifest_entries[1].name, "disk one.vmdk");
  assert_string_equal (vm->manifest_entries[1].algorithm, "SHA256");
  ferry_vm_free (vm);

  write_file ("m.mf", "MD5(m.ovf)= 0123456789abcdef0123456789abcdef\n");
  assert_null (ferry_vm_read (path));
  assert_int_equal (ferry_get_errno (), ENOTSUP);
  assert_non_null (strstr (ferry_get_error (), "m.mf: line 1: unknown digest "
                           "algorithm 'MD5'"));
  write_file ("m.mf", "SHA1(m.ovf)= 0123\n");
  assert_null (ferry_vm_read (path));
  assert_non_null (strstr (ferry_get_error (), "m.mf: line 1: a SHA1 digest "
                           "has 40 hex digits, not 4"));
}

/* Fill the tar header H for NAME, SIZE (octal, or base-256 when
 * BASE256), TYPE; the checksum over signed bytes when SIGNED_SUM. */
static void
tar_header (uint8_t *h, const char *name, uint64_t size, char type,
            bool base256, bool signed_sum)
{
  int sum = 0, i;

  memset (h, 0, 512);
  memcpy (h, name, strlen (name));
  memcpy (h + 100, "0000644", 7);
  if (base256) {
    h[124] = 0x80;
    for (i = 0; i < 8; i++)
      h[135 - i] = size >> (8 * i);
  }
  else
    snprintf ((char *) h + 124, 12, "%011llo", (unsigned long long) size);
  h[156] = type;
  memcpy (h + 257, "ustar", 6);
  memcpy (h + 263, "00", 2);
  /* A byte over 127 in the user name makes signed and unsigned sums
   * differ. */
  h[265] = 0xe9;
  for (i = 0; i < 512; i++) {
    int c = (i >= 148 && i < 156) ? ' ' : h[i];
    sum += signed_sum ? (signed char) c : c;
  }
  snprintf ((char *) h + 148, 8, "%06o", sum & 0777777);
  if (signed_sum)
    snprintf ((char *) h + 148, 8, "%06o", (unsigned) sum & 0777777);
  h[155] = ' ';
}

static void
test_tar_headers (void **state)
{
  char path[300];
  uint8_t b[512 * 8];
  struct ferry_ova *ova;
  int fd;

  memset (b, 0, sizeof b);
  /* A pax header naming the next member, then that member with a
   * base-256 size, then one summed over signed bytes; no end blocks. */
  {
    static const char rec[] = "29 path=long/folder/disk.img\n";
    tar_header (b, "PaxHeaders/x", sizeof rec - 1, 'x', false, false);
    memcpy (b + 512, rec, sizeof rec - 1);
  }
  tar_header (b + 1024, "ignored", 600, '0', true, false);
  memset (b + 1536, 0x5a, 600);
  tar_header (b + 2560, "signed.ovf", 10, '0', false, true);
  memcpy (b + 3072, "<Envelope>", 10);
  fd = open (tmp_path (path, sizeof path, "h.ova"), O_RDWR | O_CREAT | O_EXCL,
             0644);
  assert_true (fd >= 0);
  assert_int_equal (write (fd, b, 3584), 3584);
  close (fd);

  ova = ferry_ova_open (path);
  if (ova == NULL)
    fail_msg ("%s", ferry_get_error ());
  assert_int_equal (ova->nr_members, 2);
  assert_string_equal (ova->members[0].name, "long/folder/disk.img");
  assert_int_equal (ova->members[0].offset, 1536);
  assert_int_equal (ova->members[0].length, 600);
  assert_string_equal (ova->members[1].name, "signed.ovf");
  assert_non_null (ferry_ova_find (ova, "./long/folder/disk.img"));
  ferry_ova_free (ova);

  /* A checksum that matches neither way. */
  b[2560 + 148] = '7';
  fd = open (path, O_WRONLY);
  assert_int_equal (pwrite (fd, b + 2560, 512, 2560), 512);
  close (fd);
  assert_null (ferry_ova_open (path));
  assert_non_null (strstr (ferry_get_error (), "tar header at offset 2560: "
                           "bad checksum"));
}

/* The VM the target tests write: UEFI, 3 CPUs, 1.5 GiB, a SCSI disk on
 * an LSI controller, a SATA disk, a CD-ROM, two NICs (one vmxnet3). */
static struct ferry_vm *
target_vm (void)
{
  struct ferry_vm *vm = vmx (
    "displayName = \"tgt\"\nguestOS = \"rhel8-64\"\nmemSize = \"1536\"\n"
    "numvcpus = \"3\"\nfirmware = \"efi\"\n"
    "scsi0.present = \"TRUE\"\nscsi0.virtualDev = \"lsilogic\"\n"
    "scsi0:0.present = \"TRUE\"\nscsi0:0.fileName = \"a.qcow2\"\n"
    "sata0.present = \"TRUE\"\nsata0:1.present = \"TRUE\"\n"
    "sata0:1.fileName = \"b.img\"\nsata0:2.present = \"TRUE\"\n"
    "sata0:2.deviceType = \"cdrom-raw\"\n"
    "ethernet0.present = \"TRUE\"\nethernet0.virtualDev = \"vmxnet3\"\n"
    "ethernet0.addressType = \"static\"\n"
    "ethernet0.address = \"00:50:56:00:00:01\"\n"
    "ethernet1.present = \"TRUE\"\n"
    "ethernet1.generatedAddress = \"00:0c:29:00:00:02\"\n");

  assert_non_null (vm);
  return vm;
}

/* Write VM for KVM (libvirt when LIBVIRT, else the QEMU script), keeping
 * its devices when KEEP, its disks named "x,y 1.qcow2" (a comma and a
 * blank, as a QEMU option and the shell must carry them) and "/abs/b.img";
 * read it back as if from /out. */
static struct ferry_vm *
write_and_read (const struct ferry_vm *vm, bool libvirt, bool keep)
{
  const char *paths[] = { libvirt ? "/out/x,y 1.qcow2" : "x,y 1.qcow2",
                          libvirt ? "/abs/b.img" : "b 'q'.img" };
  const char *formats[] = { "qcow2", "raw" };
  uint64_t sizes[] = { 1 << 20, 1 << 20 };
  struct ferry_vm_output out = {
    .disk_paths = paths, .disk_formats = formats, .disk_sizes = sizes,
    .keep_devices = keep,
  };
  char *text = libvirt ? ferry_vm_to_libvirt (vm, &out)
    : ferry_vm_to_qemu (vm, &out);
  struct ferry_vm *back;

  assert_non_null (text);
  back = libvirt ? ferry_vm_read_libvirt ("/out/t.xml", "/out", text,
                                          strlen (text))
    : ferry_vm_read_qemu ("/out/t.sh", "/out", text, strlen (text));
  if (back == NULL)
    fail_msg ("%s\n%s", ferry_get_error (), text);
  free (text);
  return back;
}

static void
test_targets_read_back (void **state)
{
  struct ferry_vm *vm = target_vm (), *back;
  int libvirt, keep;

  for (libvirt = 0; libvirt < 2; libvirt++)
    for (keep = 0; keep < 2; keep++) {
      back = write_and_read (vm, libvirt, keep);
      assert_string_equal (back->source_type, libvirt ? "libvirt" : "qemu");
      assert_string_equal (back->name, "tgt");
      assert_int_equal (back->memory, 1536ull << 20);
      assert_int_equal (back->vcpus, 3);
      assert_int_equal (back->firmware, FERRY_VM_FIRMWARE_UEFI);
      assert_int_equal (back->nr_disks, 2);
      assert_string_equal (back->disks[0].path, "/out/x,y 1.qcow2");
      assert_string_equal (back->disks[0].format, "qcow2");
      assert_string_equal (back->disks[1].path, libvirt ? "/abs/b.img"
                           : "/out/b 'q'.img");
      assert_string_equal (back->disks[1].format, "raw");
      if (keep) {
        assert_int_equal (back->disks[0].bus, FERRY_VM_BUS_SCSI);
        assert_string_equal (back->disks[0].controller_model,
                             libvirt ? "lsilogic" : "lsi53c895a");
        assert_int_equal (back->disks[1].bus, FERRY_VM_BUS_SATA);
      }
      else {
        assert_int_equal (back->disks[0].bus, FERRY_VM_BUS_VIRTIO);
        assert_int_equal (back->disks[1].bus, FERRY_VM_BUS_VIRTIO);
      }
      assert_int_equal (back->nr_nics, 2);
      assert_string_equal (back->nics[0].mac, "00:50:56:00:00:01");
      assert_string_equal (back->nics[1].mac, "00:0c:29:00:00:02");
      assert_string_equal (back->nics[0].model, keep ? "vmxnet3" : "virtio");
      if (libvirt) {
        assert_int_equal (back->nr_cdroms, 1);
        /* libvirt's target names are unique: SCSI and SATA disks are
         * both sdX. */
        assert_string_not_equal (back->disks[0].id, back->disks[1].id);
      }
      ferry_vm_free (back);
    }
  ferry_vm_free (vm);

  /* What they refuse, saying where. */
#define LIBVIRT(t) ferry_vm_read_libvirt ("d.xml", "/", (t), strlen (t))
#define QEMU(t) ferry_vm_read_qemu ("s.sh", "/", (t), strlen (t))
  assert_null (LIBVIRT ("<domain><devices><disk device='disk'><source "
                        "dev='/dev/sda'/></disk></devices></domain>"));
  assert_non_null (strstr (ferry_get_error (), "d.xml: a <disk> without "
                           "<source file=...> (line 1)"));
  assert_null (LIBVIRT ("<vm/>"));
  assert_non_null (strstr (ferry_get_error (), "not a libvirt domain"));
  assert_null (LIBVIRT ("<domain><memory unit='parsec'>1</memory></domain>"));
  assert_non_null (strstr (ferry_get_error (), "<memory> '1 parsec' is not "
                           "a size"));
  assert_null (LIBVIRT ("<domain><devices><interface><mac address='x'/>"
                        "</interface></devices></domain>"));
  assert_non_null (strstr (ferry_get_error (), "'x' is not a MAC address"));
  assert_null (QEMU ("#!/bin/sh\necho hi\n"));
  assert_non_null (strstr (ferry_get_error (), "s.sh: not a QEMU launch "
                           "script"));
  assert_null (QEMU ("exec qemu-system-x86_64 \\\n  -m lots \\\n"));
  assert_non_null (strstr (ferry_get_error (), "s.sh: line 2: -m 'lots' is "
                           "not a size in MiB"));
#undef LIBVIRT
#undef QEMU
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (test_vmx_values),
    cmocka_unit_test (test_ovf_units),
    cmocka_unit_test (test_manifests),
    cmocka_unit_test (test_tar_headers),
    cmocka_unit_test (test_targets_read_back),
  };
  return cmocka_run_group_tests (tests, make_scratch_dir, remove_scratch_dir);
}
