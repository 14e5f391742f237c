#!/usr/bin/env python3
"""v2v-tar.py: OVF descriptors and hostile OVAs for the v2v tests, made
with Python's tarfile (a tar writer that is not ferry's).

  v2v-tar.py ovf NAME DISK FORMAT CAPACITY [COMPRESSION]
        print a small OVF (VMware style) with one disk file DISK of FORMAT
        (raw, qcow2, vmdk) and CAPACITY bytes, one CPU, 1 GiB, one NIC
  v2v-tar.py ovf-file NAME DISK FORMAT CAPACITY FILE2 [HOSTRESOURCE2]
        the same, with a second disk item whose HostResource names the
        References file FILE2 itself (ovf:/file/vmfile1, as VMware
        VirtualCenter exports do; or HOSTRESOURCE2), which DiskSection
        does not list
  v2v-tar.py hostile KIND OUT
        write the OVA OUT, hostile in the way KIND says:
          traversal  a member named ../evil.img, which the OVF names
          absolute   a member named /tmp/ferry-evil.img
          symlink    the disk is a symbolic link to /etc/passwd
          hardlink   the disk is a hard link to the descriptor
          device     the disk is a character device (1, 3: /dev/null)
          fifo       the disk is a FIFO
          huge       the disk's header claims 2^40 bytes (base-256 size)
          million    a million empty folder entries before the descriptor
          duplicate  the disk twice, with different contents
          truncated  the archive ends in the middle of the disk
"""
import io
import sys
import tarfile

OVF = '''<?xml version="1.0" encoding="UTF-8"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1" xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData" xmlns:vssd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData">
  <References>
    <File ovf:href="{disk}" ovf:id="file1"{compression}/>
  </References>
  <DiskSection>
    <Info>Virtual disk information</Info>
    <Disk ovf:capacity="{capacity}" ovf:capacityAllocationUnits="byte" ovf:diskId="vmdisk1" ovf:fileRef="file1" ovf:format="{format}"/>
  </DiskSection>
  <NetworkSection>
    <Info>The list of logical networks</Info>
    <Network ovf:name="VM Network"/>
  </NetworkSection>
  <VirtualSystem ovf:id="{name}">
    <Info>A virtual machine</Info>
    <Name>{name}</Name>
    <OperatingSystemSection ovf:id="101">
      <Info>The kind of installed guest operating system</Info>
      <Description>Linux</Description>
    </OperatingSystemSection>
    <VirtualHardwareSection>
      <Info>Virtual hardware requirements</Info>
      <System>
        <vssd:ElementName>Virtual Hardware Family</vssd:ElementName>
        <vssd:InstanceID>0</vssd:InstanceID>
        <vssd:VirtualSystemIdentifier>{name}</vssd:VirtualSystemIdentifier>
        <vssd:VirtualSystemType>vmx-13</vssd:VirtualSystemType>
      </System>
      <Item>
        <rasd:ElementName>1 virtual CPU</rasd:ElementName>
        <rasd:InstanceID>1</rasd:InstanceID>
        <rasd:ResourceType>3</rasd:ResourceType>
        <rasd:VirtualQuantity>1</rasd:VirtualQuantity>
      </Item>
      <Item>
        <rasd:AllocationUnits>byte * 2^20</rasd:AllocationUnits>
        <rasd:ElementName>1024MB of memory</rasd:ElementName>
        <rasd:InstanceID>2</rasd:InstanceID>
        <rasd:ResourceType>4</rasd:ResourceType>
        <rasd:VirtualQuantity>1024</rasd:VirtualQuantity>
      </Item>
      <Item>
        <rasd:Address>0</rasd:Address>
        <rasd:ElementName>SCSI controller 0</rasd:ElementName>
        <rasd:InstanceID>3</rasd:InstanceID>
        <rasd:ResourceSubType>lsilogic</rasd:ResourceSubType>
        <rasd:ResourceType>6</rasd:ResourceType>
      </Item>
      <Item>
        <rasd:AddressOnParent>0</rasd:AddressOnParent>
        <rasd:ElementName>Hard disk 1</rasd:ElementName>
        <rasd:HostResource>ovf:/disk/vmdisk1</rasd:HostResource>
        <rasd:InstanceID>4</rasd:InstanceID>
        <rasd:Parent>3</rasd:Parent>
        <rasd:ResourceType>17</rasd:ResourceType>
      </Item>
      <Item>
        <rasd:AddressOnParent>7</rasd:AddressOnParent>
        <rasd:Connection>VM Network</rasd:Connection>
        <rasd:ElementName>Network adapter 1</rasd:ElementName>
        <rasd:InstanceID>5</rasd:InstanceID>
        <rasd:ResourceSubType>E1000</rasd:ResourceSubType>
        <rasd:ResourceType>10</rasd:ResourceType>
      </Item>
    </VirtualHardwareSection>
  </VirtualSystem>
</Envelope>
'''

FORMATS = {
    'raw': 'http://www.gnome.org/~markmc/raw-disk',
    'qcow2': 'http://www.gnome.org/~markmc/qcow-image-format.html',
    'vmdk': 'http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized',
}


def ovf(name, disk, fmt, capacity, compression=None):
    return OVF.format(name=name, disk=disk, format=FORMATS[fmt],
                      capacity=capacity,
                      compression=' ovf:compression="%s"' % compression
                      if compression else '')


ITEM2 = '''      <Item>
        <rasd:AddressOnParent>1</rasd:AddressOnParent>
        <rasd:ElementName>Hard disk 2</rasd:ElementName>
        <rasd:HostResource>{host}</rasd:HostResource>
        <rasd:InstanceID>6</rasd:InstanceID>
        <rasd:Parent>3</rasd:Parent>
        <rasd:ResourceType>17</rasd:ResourceType>
      </Item>
'''


def ovf_file(name, disk, fmt, capacity, file2, host2='ovf:/file/vmfile1'):
    text = ovf(name, disk, fmt, capacity)
    text = text.replace('  </References>', '    <File ovf:href="%s" ovf:id="vmfile1"/>\n'
                        '  </References>' % file2, 1)
    nic = '      <Item>\n        <rasd:AddressOnParent>7<'
    return text.replace(nic, ITEM2.format(host=host2) + nic, 1)


def add_bytes(tar, name, data, **kw):
    ti = tarfile.TarInfo(name)
    ti.size = len(data)
    for k, v in kw.items():
        setattr(ti, k, v)
    tar.addfile(ti, io.BytesIO(data))


def hostile(kind, out):
    disk = b'\x5a' * 4096
    name = {'traversal': '../evil.img', 'absolute': '/tmp/ferry-evil.img'}.get(kind, 'disk.img')
    desc = ovf('hostile', name, 'raw', 4096).encode()
    if kind == 'million':
        # One folder header, a million times, then a real package: only a
        # reader that gives up early stays fast and small.
        ti = tarfile.TarInfo('d')
        ti.type = tarfile.DIRTYPE
        hdr = ti.tobuf(format=tarfile.USTAR_FORMAT)
        with open(out, 'wb') as f:
            chunk = hdr * 10000
            for _ in range(100):
                f.write(chunk)
            with tarfile.open(fileobj=f, mode='w', format=tarfile.USTAR_FORMAT) as tar:
                add_bytes(tar, 'hostile.ovf', desc)
                add_bytes(tar, 'disk.img', disk)
        return
    if kind == 'huge':
        # The headers by hand: tarfile would want 1 TiB of data.
        d = tarfile.TarInfo('hostile.ovf')
        d.size = len(desc)
        ti = tarfile.TarInfo('disk.img')
        ti.size = 1 << 40
        with open(out, 'wb') as f:
            f.write(d.tobuf(format=tarfile.GNU_FORMAT))
            f.write(desc + b'\0' * (-len(desc) % 512))
            f.write(ti.tobuf(format=tarfile.GNU_FORMAT))
            f.write(disk)
        return
    with tarfile.open(out, 'w', format=tarfile.GNU_FORMAT) as tar:
        add_bytes(tar, 'hostile.ovf', desc)
        if kind in ('traversal', 'absolute'):
            add_bytes(tar, name, disk)
        elif kind == 'symlink':
            add_bytes(tar, 'disk.img', b'', type=tarfile.SYMTYPE,
                      linkname='/etc/passwd')
        elif kind == 'hardlink':
            add_bytes(tar, 'disk.img', b'', type=tarfile.LNKTYPE,
                      linkname='hostile.ovf')
        elif kind == 'device':
            add_bytes(tar, 'disk.img', b'', type=tarfile.CHRTYPE,
                      devmajor=1, devminor=3)
        elif kind == 'fifo':
            add_bytes(tar, 'disk.img', b'', type=tarfile.FIFOTYPE)
        elif kind == 'duplicate':
            add_bytes(tar, 'disk.img', disk)
            add_bytes(tar, 'disk.img', b'\xa5' * 4096)
        elif kind == 'truncated':
            add_bytes(tar, 'disk.img', disk)
        else:
            raise SystemExit('unknown kind ' + kind)
    if kind == 'truncated':
        with tarfile.open(out) as tar:
            cut = tar.getmember('disk.img').offset_data + 1000
        with open(out, 'r+b') as f:
            f.truncate(cut)


def main():
    if sys.argv[1] == 'ovf':
        sys.stdout.write(ovf(*sys.argv[2:]))
    elif sys.argv[1] == 'ovf-file':
        sys.stdout.write(ovf_file(*sys.argv[2:]))
    elif sys.argv[1] == 'hostile':
        hostile(sys.argv[2], sys.argv[3])
    else:
        raise SystemExit(__doc__)


if __name__ == '__main__':
    main()
