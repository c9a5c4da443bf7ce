# tessera: an HTTP accelerator.  Plain GNU make; everything is built out of
# tree under $(BUILD).  `make help` lists the targets.

BUILD   ?= build
PREFIX  ?= /usr/local
SYSCONFDIR ?= /etc
CC      ?= gcc

LLHTTP_SRC := /usr/share/llhttp
LLHTTP_INC := /usr/share/include/llhttp

OPT      ?= -O2
SAN      ?=
CFLAGS   := -std=c11 $(OPT) -g -Wall -Wextra -Werror -D_GNU_SOURCE -pthread \
            -I. -I$(LLHTTP_INC) $(SAN) $(EXTRA_CFLAGS) \
            -DTESSERA_DEFAULT_CONF='"$(SYSCONFDIR)/tessera/tessera.conf"'
DEPFLAGS  = -MMD -MP
LDFLAGS  := -pthread $(SAN)
LIBS     := -lev -lmemcached -lpcre2-8 -lxxhash -lz -lbrotlienc -lbrotlidec -lzstd -lm

# Debian packages the build, the tests and the demo need.
DEPS_PKGS := gcc make libev-dev node-llhttp zlib1g-dev libbrotli-dev libmemcached-dev \
             memcached libcmocka-dev libpcre2-dev libxxhash-dev libzstd-dev pkg-config \
             procps curl

SRC_DIRS := config cache compress proxy
LIB_SRCS := $(filter-out proxy/main.c,$(foreach d,$(SRC_DIRS),$(wildcard $(d)/*.c)))
LIB_OBJS := $(LIB_SRCS:%.c=$(BUILD)/%.o)
MAIN_OBJ := $(BUILD)/proxy/main.o
LLHTTP_OBJS := $(BUILD)/llhttp/api.o $(BUILD)/llhttp/http.o $(BUILD)/llhttp/llhttp.o
LIBTESSERA := $(BUILD)/libtessera.a

SUPPORT_SRCS := $(filter-out tests/support/origin.c,$(wildcard tests/support/*.c))
SUPPORT_OBJS := $(SUPPORT_SRCS:%.c=$(BUILD)/%.o)
LIBSUPPORT   := $(BUILD)/libsupport.a
ORIGIN       := $(BUILD)/tessera-origin

UNIT_SRCS  := $(wildcard tests/unit/*/*.c)
UNIT_BINS  := $(UNIT_SRCS:%.c=$(BUILD)/%)
INTEG_SRCS := $(wildcard tests/integration/*.c)
INTEG_BINS := $(INTEG_SRCS:%.c=$(BUILD)/%)

.PHONY: all deps test check run install format clean help tests bench fuzz
all: $(BUILD)/tessera $(ORIGIN)

help:
	@echo "make deps     install the Debian packages tessera needs (apt-get)"
	@echo "make          build $(BUILD)/tessera"
	@echo "make run      start the demo app on :8000 and tessera on :8080"
	@echo "make test     build and run every unit and integration test"
	@echo "make check    the same tests built with ASan and UBSan"
	@echo "make bench    wrk benchmarks (see bench/README.md)"
	@echo "make fuzz     libFuzzer targets for FUZZ_SECONDS each (needs clang)"
	@echo "make install  install into PREFIX=$(PREFIX)"

deps:
	@missing=""; for p in $(DEPS_PKGS); do \
	    dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" != 0 ]; then \
	    echo "missing packages:$$missing"; \
	    echo "run: sudo sh -c 'apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y$$missing'"; \
	    exit 1; \
	fi; \
	echo "installing:$$missing"; \
	apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing

$(BUILD)/tessera: $(MAIN_OBJ) $(LIBTESSERA) $(LLHTTP_OBJS)
	$(CC) $(LDFLAGS) -o $@ $(MAIN_OBJ) $(LIBTESSERA) $(LLHTTP_OBJS) $(LIBS)

$(LIBTESSERA): $(LIB_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(DEPFLAGS) -c $< -o $@

# llhttp ships as generated C sources in Debian's node-llhttp: compile them
# here, never copy them into the tree.  They are not ours to make -Wextra clean.
$(BUILD)/llhttp/%.o: $(LLHTTP_SRC)/%.c
	@mkdir -p $(dir $@)
	$(CC) -std=c11 $(OPT) -g -I$(LLHTTP_INC) $(SAN) -c $< -o $@

$(LIBSUPPORT): $(SUPPORT_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(ORIGIN): $(BUILD)/tests/support/origin.o $(LLHTTP_OBJS)
	$(CC) $(LDFLAGS) -o $@ $^ -lev -lz

$(BUILD)/tests/unit/%: tests/unit/%.c $(LIBTESSERA) $(LIBSUPPORT) $(LLHTTP_OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(DEPFLAGS) -o $@ $< $(LIBTESSERA) $(LIBSUPPORT) $(LLHTTP_OBJS) $(LIBS) -lcmocka

$(BUILD)/tests/integration/%: tests/integration/%.c $(LIBSUPPORT) $(LLHTTP_OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(DEPFLAGS) -o $@ $< $(LIBSUPPORT) $(LLHTTP_OBJS) -lcmocka -lev \
	    -lz -lbrotlidec -lzstd

tests: all $(UNIT_BINS) $(INTEG_BINS)

# Each test binary is a cmocka group; tests/run.sh runs them all and prints
# one closing "N passed, N failed" line.
test: deps
	@$(MAKE) --no-print-directory tests
	@BUILD=$(BUILD) tests/run.sh $(UNIT_BINS) $(INTEG_BINS)

check: deps
	@$(MAKE) --no-print-directory BUILD=build/asan OPT=-O1 \
	    SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all" tests
	@BUILD=build/asan ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	    tests/run.sh $(UNIT_BINS:$(BUILD)/%=build/asan/%) $(INTEG_BINS:$(BUILD)/%=build/asan/%)

run: deps
	@$(MAKE) --no-print-directory all
	@BUILD=$(BUILD) tests/support/run-demo.sh

bench: all
	@bench/run.sh

# libFuzzer targets (tests/fuzz/NAME.c, seeds in tests/fuzz/corpus/NAME/),
# built with clang against the pure modules (config/, cache/).
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := $(wildcard tests/fuzz/*.c)
FUZZ_SRCS    := $(filter-out proxy/%,$(LIB_SRCS))
fuzz:
	@command -v clang >/dev/null || { echo "make fuzz needs clang: apt-get install -y clang"; exit 1; }
	@mkdir -p $(BUILD)/fuzz
	@for t in $(FUZZ_TARGETS); do \
	    name=$$(basename $$t .c); \
	    clang -g -O1 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined -I. -I$(LLHTTP_INC) \
	        $$t $(FUZZ_SRCS) -lxxhash -lpcre2-8 -lmemcached -lz -lbrotlienc -lbrotlidec -lzstd -lm \
	        -o $(BUILD)/fuzz/$$name || exit 1; \
	    mkdir -p $(BUILD)/fuzz/$$name.out tests/fuzz/corpus/$$name; \
	    echo "fuzzing $$name for $(FUZZ_SECONDS) s"; \
	    $(BUILD)/fuzz/$$name -max_total_time=$(FUZZ_SECONDS) $(BUILD)/fuzz/$$name.out \
	        tests/fuzz/corpus/$$name || exit 1; \
	done

install: all
	install -d $(DESTDIR)$(PREFIX)/sbin $(DESTDIR)$(PREFIX)/share/man/man8 \
	    $(DESTDIR)$(PREFIX)/share/man/man5 $(DESTDIR)$(PREFIX)/share/doc/tessera \
	    $(DESTDIR)$(SYSCONFDIR)/tessera
	install -m 755 $(BUILD)/tessera $(DESTDIR)$(PREFIX)/sbin/tessera
	install -m 644 man/tessera.8 $(DESTDIR)$(PREFIX)/share/man/man8/tessera.8
	install -m 644 man/tessera.conf.5 $(DESTDIR)$(PREFIX)/share/man/man5/tessera.conf.5
	install -m 644 conf.d/tessera.conf $(DESTDIR)$(PREFIX)/share/doc/tessera/tessera.conf.example
	@# Never overwrite an operator's config.
	test -e $(DESTDIR)$(SYSCONFDIR)/tessera/tessera.conf || \
	    install -m 644 conf.d/tessera.conf $(DESTDIR)$(SYSCONFDIR)/tessera/tessera.conf

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD)

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
