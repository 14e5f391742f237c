#!/usr/bin/env python3
"""v2v-expect.py: what a VM description declares, read independently of
ferry (Python's own XML parser, plain text for VMX), for the v2v tests to
hold ferry's reading against.

  v2v-expect.py disks FILE     one line per disk: FILE-NAME CAPACITY FORMAT
                               (the names a test must create)
  v2v-expect.py compare FILE JSON
                               compare ferry's `v2v --dry-run --json` output
                               (JSON, a file) with FILE; print each
                               difference, exit 1 when there is one

What is compared: the name, the CPU count, the memory, the firmware, the
disks (count, and each one's capacity for OVF), the NICs (count, their
networks, and their MAC addresses where the file gives them).
"""
import json
import re
import sys
import xml.etree.ElementTree as ET


def local(tag):
    return tag.rsplit('}', 1)[-1]


def attr(el, name):
    for k, v in el.attrib.items():
        if local(k) == name:
            return v
    return None


def child(el, name):
    for c in el:
        if local(c.tag) == name:
            return c
    return None


def text(el, name):
    c = child(el, name)
    return c.text.strip() if c is not None and c.text else None


def units(u, default):
    if not u:
        return default
    u = u.replace(' ', '').lower()
    words = {'byte': 1, 'bytes': 1, 'kilobytes': 1 << 10, 'kb': 1 << 10,
             'megabytes': 1 << 20, 'mb': 1 << 20, 'gigabytes': 1 << 30,
             'gb': 1 << 30}
    if u in words:
        return words[u]
    m = re.fullmatch(r'byte\*(\d+)\^(\d+)', u)
    if m:
        return int(m.group(1)) ** int(m.group(2))
    raise ValueError('unit ' + u)


def section(el, kind):
    for c in el:
        t = attr(c, 'type') or ''
        if local(c.tag) == kind or t.split(':')[-1] == kind + '_Type':
            return c
    return None


def ovf_expect(path):
    root = ET.parse(path).getroot()
    files = {attr(f, 'id'): f for f in root.iter() if local(f.tag) == 'File'}
    disks = {}
    ds = section(root, 'DiskSection')
    for d in (ds if ds is not None else []):
        if local(d.tag) != 'Disk':
            continue
        cap = int(attr(d, 'capacity')) * units(attr(d, 'capacityAllocationUnits'), 1)
        f = files.get(attr(d, 'fileRef'))
        fmt = attr(d, 'format') or ''
        disks[attr(d, 'diskId')] = {
            'file': attr(f, 'href') if f is not None else None,
            'capacity': cap,
            'format': 'streamOptimized' if 'streamOptimized' in fmt else
                      'monolithicSparse' if 'vmdk' in fmt or 'sparse' in fmt else 'raw',
            'gzip': f is not None and attr(f, 'compression') == 'gzip',
        }
    vs = next(e for e in root.iter()
              if local(e.tag) == 'VirtualSystem' or
              (attr(e, 'type') or '').endswith('VirtualSystem_Type'))
    # The deployment configuration: the default one, or the first.
    configs = [c for c in root.iter() if local(c.tag) == 'Configuration']
    config = next((attr(c, 'id') for c in configs if attr(c, 'default') == 'true'),
                  attr(configs[0], 'id') if configs else None)
    hw = section(vs, 'VirtualHardwareSection')
    items = {}
    for it in hw:
        if local(it.tag) not in ('Item', 'StorageItem', 'EthernetPortItem'):
            continue
        conf = attr(it, 'configuration')
        if conf and config not in conf.split():
            continue
        iid = text(it, 'InstanceID') or text(it, 'InstanceId')
        items.pop(iid, None)
        items[iid] = it
    e = {'disks': [], 'nics': []}
    name = text(vs, 'Name')
    e['name'] = name or attr(vs, 'id')
    e['vcpus'] = 1
    for it in items.values():
        rt = int(text(it, 'ResourceType'))
        if rt == 3:
            e['vcpus'] = int(text(it, 'VirtualQuantity'))
        elif rt == 4:
            e['memory'] = int(text(it, 'VirtualQuantity')) * units(text(it, 'AllocationUnits'), 1 << 20)
        elif rt == 17:
            res = text(it, 'HostResource').split('/')[-1]
            e['disks'].append(disks.pop(res))
        elif rt == 10:
            e['nics'].append({'network': text(it, 'Connection')})
    e['disks'] += disks.values()          # attached to nothing
    fw = [c for c in hw if local(c.tag) == 'Config' and attr(c, 'key') == 'firmware']
    e['firmware'] = 'uefi' if fw and attr(fw[0], 'value') == 'efi' else None
    # VirtualBox's own section holds the MACs of the enabled adapters.
    machine = child(vs, 'Machine')
    if machine is not None:
        macs = [attr(a, 'MACAddress') for a in machine.iter()
                if local(a.tag) == 'Adapter' and attr(a, 'enabled') == 'true']
        for n, m in zip(e['nics'], macs):
            n['mac'] = ':'.join(m[i:i + 2] for i in range(0, 12, 2)).lower()
    return e


def vmx_expect(path):
    kv = {}
    for line in open(path, encoding='utf-8'):
        m = re.match(r'\s*([^#=\s][^=]*?)\s*=\s*"(.*)"\s*$', line)
        if m:
            kv[m.group(1).lower()] = m.group(2)
    e = {'name': kv.get('displayname'), 'vcpus': int(kv.get('numvcpus', '1')),
         'memory': int(kv['memsize']) << 20 if 'memsize' in kv else None,
         'firmware': 'uefi' if kv.get('firmware') == 'efi' else 'bios',
         'disks': [], 'nics': []}
    for k, v in kv.items():
        m = re.fullmatch(r'(ide|scsi|sata|nvme)(\d+):(\d+)\.filename', k)
        if not m or kv.get(k[:-len('filename')] + 'present', '').upper() != 'TRUE':
            continue
        dtype = kv.get(k[:-len('filename')] + 'devicetype', '')
        if 'cdrom' in dtype.lower():
            continue
        e['disks'].append({'file': v, 'format': 'monolithicSparse'})
    for n in range(10):
        p = 'ethernet%d.' % n
        if kv.get(p + 'present', '').upper() != 'TRUE':
            continue
        mac = kv.get(p + ('address' if kv.get(p + 'addresstype') == 'static'
                          else 'generatedaddress'))
        e['nics'].append({'network': kv.get(p + 'networkname',
                                            kv.get(p + 'connectiontype')),
                          'mac': mac.lower() if mac else None})
    return e


def expect(path):
    with open(path, 'rb') as f:
        head = f.read(512).lstrip()
    return ovf_expect(path) if head.startswith(b'<') else vmx_expect(path)


def main():
    if sys.argv[1] == 'disks':
        for d in expect(sys.argv[2])['disks']:
            if d.get('file'):
                print(d['file'], d.get('capacity', 1 << 30), d['format'],
                      'gzip' if d.get('gzip') else 'plain')
        return 0
    e = expect(sys.argv[2])
    got = json.load(open(sys.argv[3]))
    vm = got['vm']
    diffs = []

    def same(what, want, have):
        if want != have:
            diffs.append('%s: the file says %r, ferry says %r' % (what, want, have))

    same('name', e['name'], vm.get('name'))
    same('CPUs', e['vcpus'], vm.get('vcpus'))
    same('memory', e.get('memory'), vm.get('memory'))
    if e.get('firmware'):
        same('firmware', e['firmware'], vm.get('firmware'))
    same('number of disks', len(e['disks']), len(vm['disks']))
    for i, (d, g) in enumerate(zip(e['disks'], vm['disks'])):
        same('disk %d file' % (i + 1), d['file'], g.get('file'))
        if 'capacity' in d:
            same('disk %d capacity' % (i + 1), d['capacity'], g.get('capacity'))
    same('number of NICs', len(e['nics']), len(vm['nics']))
    for i, (n, g) in enumerate(zip(e['nics'], vm['nics'])):
        # The plan maps networks for libvirt: compare the source's names
        # only when the run kept them (the test passes --to local).
        same('NIC %d network' % (i + 1), n['network'], g.get('network'))
        if n.get('mac'):
            same('NIC %d MAC' % (i + 1), n['mac'], g.get('mac'))
    for d in diffs:
        print(d)
    return 1 if diffs else 0


if __name__ == '__main__':
    sys.exit(main())
