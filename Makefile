# ferry: the two commands of the README, and a few more.
#   make demo    install what is missing, build, migrate the test guest (a
#                Debian VM as VMware exports it) to KVM and boot it
#   make demo-disks  the disk-format tour (convert, compare, check)
#   make check   install what is missing, build twice (plain, and with
#                ASan+UBSan+libFuzzer under clang), run every test and
#                fuzzer, and end with "N passed, N failed"
#   make bench   the benchmarks against qemu-img, cp, nbdcopy and qemu-nbd

BUILD      ?= build
ASAN_BUILD ?= build-asan

.PHONY: all deps build build-asan demo demo-disks check bench clean

all: build

deps:
	scripts/install-deps

build: deps
	@[ -f $(BUILD)/build.ninja ] || meson setup $(BUILD)
	ninja -C $(BUILD)

build-asan: deps
	@[ -f $(ASAN_BUILD)/build.ninja ] || CC=clang meson setup $(ASAN_BUILD) \
	  -Db_sanitize=address,undefined -Db_lundef=false -Dfuzz=true \
	  -Dbuildtype=debug
	ninja -C $(ASAN_BUILD)

demo: build
	scripts/demo $(BUILD)

demo-disks: build
	scripts/demo-disks $(BUILD)

check: build build-asan
	scripts/run-checks $(BUILD) $(ASAN_BUILD)

bench: build
	bench/convert.sh $(BUILD)
	bench/vmdk.sh $(BUILD)
	bench/nbd.sh $(BUILD)
	bench/vhdx.sh $(BUILD)
	bench/v2v.sh $(BUILD)
	bench/vhd-vdi.sh $(BUILD)
	bench/v2v-guest.sh $(BUILD)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
