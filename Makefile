# icn: introspective convolutional networks as a Unix pipeline in C.
# `make demo` and `make test` install what is missing (Debian), build, fetch and run.
PREFIX ?= /usr/local
CC ?= gcc
PKGS := openblas libzmq msgpack libpng zlib jansson
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
OPT ?= -O3 -march=native
CFLAGS ?= $(OPT) -g
CFLAGS += -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Ilib $(PKG_CFLAGS)
LDLIBS += $(PKG_LIBS) -ldnnl -lgomp -lm -lpthread
BUILD ?= build

LIB_SRC := $(wildcard lib/*.c)
LIB_OBJ := $(LIB_SRC:lib/%.c=$(BUILD)/lib/%.o)
CMDS := icn-load icn-classify icn-synthesize icn-pool icn-eval
CMD_SRC := $(wildcard cmd/icn-*.c)
BINS := $(CMD_SRC:cmd/%.c=$(BUILD)/bin/%)
UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
BENCH_BINS := $(patsubst tests/bench/%.c,$(BUILD)/tests/%,$(wildcard tests/bench/bench_*.c))
TEST_TOOLS := $(BUILD)/tests/gen_datasets
MANS := $(wildcard man/*.1 man/*.5 man/*.7)

.PHONY: all deps test unit e2e demo bench asan fuzz fuzz-corpus clean install uninstall data check-layers
all: $(BUILD)/libicn.a $(BINS) $(UNIT_BINS) $(BENCH_BINS) $(TEST_TOOLS)

deps:
	@scripts/deps.sh

$(BUILD)/lib/%.o: lib/%.c $(wildcard lib/*.h) | $(BUILD)/lib
	$(CC) $(CFLAGS) -c $< -o $@
$(BUILD)/libicn.a: $(LIB_OBJ)
	ar rcs $@ $^
$(BUILD)/bin/%: cmd/%.c $(BUILD)/libicn.a $(wildcard lib/*.h) | $(BUILD)/bin
	$(CC) $(CFLAGS) $< -o $@ $(LDFLAGS) $(BUILD)/libicn.a $(LDLIBS)
$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/libicn.a $(wildcard lib/*.h tests/unit/*.h) | $(BUILD)/tests
	$(CC) $(CFLAGS) $< -o $@ $(LDFLAGS) $(BUILD)/libicn.a $(LDLIBS) -lcmocka
$(BUILD)/tests/bench_%: tests/bench/bench_%.c $(BUILD)/libicn.a $(wildcard lib/*.h) | $(BUILD)/tests
	$(CC) $(CFLAGS) $< -o $@ $(LDFLAGS) $(BUILD)/libicn.a $(LDLIBS)
# The crash test's fault injector: libicn.a's writes, fsyncs and renames go through it.
$(BUILD)/tests/test_crash: LDLIBS += -Wl,--wrap=write,--wrap=pwrite,--wrap=fsync,--wrap=fdatasync,--wrap=rename,--wrap=ftruncate,--wrap=link
# Writes small CIFAR-10 and SVHN files for the e2e tests.
$(BUILD)/tests/gen_datasets: tests/e2e/gen_datasets.c tests/unit/matwrite.h | $(BUILD)/tests
	$(CC) $(CFLAGS) $< -o $@ $(LDFLAGS) -lz
$(BUILD)/lib $(BUILD)/bin $(BUILD)/tests:
	mkdir -p $@

data: deps all
	$(BUILD)/bin/icn-load --fetch mnist

# The README's test command: the layering check, C unit tests + Bats end-to-end tests, one summary line.
test: deps
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory check-layers
	@$(MAKE) --no-print-directory data
	@BUILD=$(BUILD) tests/run.sh

unit: all check-layers
	@BUILD=$(BUILD) tests/run.sh unit

# No cycle among lib/ files: which file calls which, from the objects' defined and undefined
# symbols (docs/GUIDE.md, Layout, has the intended order).
check-layers: $(LIB_OBJ)
	@scripts/check-layers.py $(LIB_OBJ)

# The build uses every core (make demo is timed from a fresh clone: docs/RESULTS.md).
demo: deps
	@$(MAKE) --no-print-directory -j$$(nproc) all
	@$(MAKE) --no-print-directory data
	@BUILD=$(BUILD) pipelines/demo.sh

bench:
	@ICN_EXTRA_PKGS=python3-torch scripts/deps.sh
	@$(MAKE) --no-print-directory all data
	@BUILD=$(BUILD) tests/bench/bench.sh

# Everything under AddressSanitizer + UBSan, then the whole suite.
asan:
	@$(MAKE) --no-print-directory BUILD=build-asan OPT="-O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined" \
	    LDFLAGS="-fsanitize=address,undefined" test

# libFuzzer harnesses (tests/fuzz/fuzz_*.c): Debian's clang with ASan and UBSan, against a
# libicn.a compiled the same way in its own build directory. tests/run.sh fuzz runs them.
FUZZ_BUILD ?= build-fuzz
FUZZ_CC ?= clang
FUZZ_FLAGS := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
FUZZ_CFLAGS := $(FUZZ_FLAGS) -fsanitize=fuzzer-no-link -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Ilib $(PKG_CFLAGS)
FUZZ_LIB_OBJ := $(LIB_SRC:lib/%.c=$(FUZZ_BUILD)/lib/%.o)
FUZZ_BINS := $(patsubst tests/fuzz/%.c,$(FUZZ_BUILD)/%,$(wildcard tests/fuzz/fuzz_*.c))
fuzz: $(FUZZ_BINS)
$(FUZZ_BUILD)/lib/%.o: lib/%.c $(wildcard lib/*.h) | $(FUZZ_BUILD)/lib
	$(FUZZ_CC) $(FUZZ_CFLAGS) -c $< -o $@
$(FUZZ_BUILD)/libicn.a: $(FUZZ_LIB_OBJ)
	ar rcs $@ $^
$(FUZZ_BUILD)/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz.h $(FUZZ_BUILD)/libicn.a
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer $< -o $@ $(FUZZ_BUILD)/libicn.a $(LDLIBS)
# Writes the seed corpora (tests/fuzz/corpus/<harness>/) with the library itself.
$(BUILD)/tests/gen_corpus: tests/fuzz/gen_corpus.c $(BUILD)/libicn.a tests/unit/matwrite.h | $(BUILD)/tests
	$(CC) $(CFLAGS) $< -o $@ $(LDFLAGS) $(BUILD)/libicn.a $(LDLIBS)
fuzz-corpus: $(BUILD)/tests/gen_corpus
	$(BUILD)/tests/gen_corpus tests/fuzz/corpus
$(FUZZ_BUILD)/lib:
	mkdir -p $@

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include/icn \
	    $(DESTDIR)$(PREFIX)/share/man/man1 $(DESTDIR)$(PREFIX)/share/man/man5 $(DESTDIR)$(PREFIX)/share/icn/pipelines $(DESTDIR)$(PREFIX)/share/icn/scripts
	install -m 755 $(BINS) $(DESTDIR)$(PREFIX)/bin/
	install -m 644 $(BUILD)/libicn.a $(DESTDIR)$(PREFIX)/lib/
	install -m 644 lib/*.h $(DESTDIR)$(PREFIX)/include/icn/
	for m in $(MANS); do s=$${m##*.}; install -m 644 $$m $(DESTDIR)$(PREFIX)/share/man/man$$s/; done
	install -m 755 pipelines/*.sh pipelines/*.py $(DESTDIR)$(PREFIX)/share/icn/pipelines/
	install -d $(DESTDIR)$(PREFIX)/share/icn/pipelines/slurm
	install -m 644 pipelines/slurm/README $(DESTDIR)$(PREFIX)/share/icn/pipelines/slurm/
	install -m 755 pipelines/slurm/*.sbatch $(DESTDIR)$(PREFIX)/share/icn/pipelines/slurm/
	install -m 755 scripts/fetch-mnist.sh $(DESTDIR)$(PREFIX)/share/icn/scripts/

uninstall:
	rm -f $(addprefix $(DESTDIR)$(PREFIX)/bin/,$(notdir $(BINS))) $(DESTDIR)$(PREFIX)/lib/libicn.a
	rm -rf $(DESTDIR)$(PREFIX)/include/icn $(DESTDIR)$(PREFIX)/share/icn
	for m in $(MANS); do s=$${m##*.}; rm -f $(DESTDIR)$(PREFIX)/share/man/man$$s/$$(basename $$m); done

clean:
	rm -rf build build-asan build-fuzz
