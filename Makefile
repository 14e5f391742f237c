# ferry: the two commands of the README, and a few more.
#   make demo    install what is missing, build, migrate a running VM warm
#                (its measured downtime, the migrated disk booted)
#   make demo-cold  migrate the test guest (a Debian VM as VMware exports
#                it) to KVM, converting it, and boot it
#   make demo-disks  the disk-format tour (convert, compare, check)
#   make check   install what is missing, build four times (plain gcc;
#                ASan+UBSan+libFuzzer under clang; release builds with gcc
#                -O3 and with clang), run every test in the first two, the
#                unit tests in the gcc release build, every fuzzer, and end
#                with "N passed, N failed, N skipped"
#   make bench   the benchmarks against qemu-img, cp, nbdcopy and qemu-nbd
#
# Every build here has -Werror (--werror, set again on a build directory
# configured without it); a build of ferry outside the project's own
# (meson setup without --werror) keeps warnings as warnings.

BUILD         ?= build
ASAN_BUILD    ?= build-asan
RELEASE_BUILD ?= build-release
CLANG_BUILD   ?= build-clang

# werror DIR: make sure the build in DIR treats warnings as errors.
werror = meson configure $(1) | grep -q -E '^ *werror +true' || \
	  meson configure $(1) -Dwerror=true

.PHONY: all deps build build-asan configure-release demo demo-cold demo-disks check bench clean

all: build

deps:
	scripts/install-deps

build: deps
	@[ -f $(BUILD)/build.ninja ] || meson setup --werror $(BUILD)
	@$(call werror,$(BUILD))
	ninja -C $(BUILD)

build-asan: deps
	@[ -f $(ASAN_BUILD)/build.ninja ] || CC=clang meson setup --werror $(ASAN_BUILD) \
	  -Db_sanitize=address,undefined -Db_lundef=false -Dfuzz=true \
	  -Dbuildtype=debug
	@$(call werror,$(ASAN_BUILD))
	ninja -C $(ASAN_BUILD)

# The release builds are only configured here: run-checks compiles them
# and counts a failure like any other.
configure-release: deps
	@[ -f $(RELEASE_BUILD)/build.ninja ] || CC=gcc meson setup --werror \
	  -Dbuildtype=release $(RELEASE_BUILD)
	@[ -f $(CLANG_BUILD)/build.ninja ] || CC=clang meson setup --werror \
	  -Dbuildtype=release $(CLANG_BUILD)
	@$(call werror,$(RELEASE_BUILD))
	@$(call werror,$(CLANG_BUILD))

demo: build
	scripts/demo $(BUILD)

demo-cold: build
	scripts/demo-cold $(BUILD)

demo-disks: build
	scripts/demo-disks $(BUILD)

check: build build-asan configure-release
	scripts/run-checks test:$(BUILD) unit:$(RELEASE_BUILD) build:$(CLANG_BUILD) \
	  test:$(ASAN_BUILD) fuzz:$(ASAN_BUILD)

bench: build
	bench/convert.sh $(BUILD)
	bench/vmdk.sh $(BUILD)
	bench/nbd.sh $(BUILD)
	bench/vhdx.sh $(BUILD)
	bench/v2v.sh $(BUILD)
	bench/vhd-vdi.sh $(BUILD)
	bench/v2v-guest.sh $(BUILD)
	bench/jobs.sh $(BUILD)
	bench/warm.sh $(BUILD)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(RELEASE_BUILD) $(CLANG_BUILD)
