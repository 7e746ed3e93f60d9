# echod - one flat GNU Makefile.
#
#   make            build build/echod and build/echoc
#   make run        install liburing-dev if missing (as root; otherwise print the
#                   apt-get command and go on with epoll), build, start echod on
#                   its default address
#   make check      install missing build and test dependencies (as root), build,
#                   run every test (tests/check.sh: gcc and clang builds, unit
#                   tests, a build without liburing, then the unit and end-to-end
#                   tests under ASan+UBSan and TSan)
#   make unit       build and run the cmocka unit tests (tests/unit/)
#   make clang      build everything with clang too, in build-clang/
#   make bench      echod's models and other echo servers side by side, with
#                   echoc bench as the load (bench/run.sh), after the latency
#                   floor (build/echod-floor); SUITE=uring-vs-epoll,
#                   SUITE=idle (memory per idle connection), SUITE=udp,
#                   SUITE=placement, SUITE=locality or SUITE=latency for a
#                   subset, QUICK=1 for short runs; SUITE=million holds up to
#                   1,000,000 idle connections (not in make check)
#   make soak       mixed hostile clients on every engine, then descriptors,
#                   threads and RSS back to their baseline (tests/soak/soak.py);
#                   SOAK_S seconds per engine (default 60)
#   make install    PREFIX=/usr/local DESTDIR=
#
# SANITIZER=address,undefined or SANITIZER=thread builds an instrumented tree
# in build-<sanitizer>/.  URING=auto (default: use liburing when it is
# installed), URING=yes (fail without it) or URING=no (never; the tree is
# build-nouring/).  User CFLAGS and LDFLAGS are respected.
#
# Every tree records how it was configured in $(B)/config: the compiler and
# its version, the flags, whether liburing is used, the sanitizer.  Every
# object, program and unit test depends on that file, and it is rewritten only
# when the configuration differs from the recorded one, so a tree is never
# reused for another configuration: liburing installed after a first build,
# another CC, other CFLAGS all rebuild it (git's GIT-CFLAGS, Redis's
# .make-settings).  The configurations `make check` builds (gcc, clang, no
# liburing, each sanitizer) still get a tree each, so that switching between
# them does not rebuild everything every time.

CC        ?= cc
CFLAGS    ?= -O2 -g
PREFIX    ?= /usr/local
URING     ?= auto
WARN       = -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes
ALL_CFLAGS = -std=c11 -D_GNU_SOURCE $(WARN) $(CFLAGS)
ALL_LDFLAGS = $(LDFLAGS)
comma     := ,

ifeq ($(filter $(URING),auto yes no),)
$(error URING=$(URING): use URING=auto, URING=yes or URING=no)
endif

# build, build-address-undefined, build-thread, build-nouring, ...
B         ?= build$(if $(SANITIZER),-$(subst $(comma),-,$(SANITIZER)))$(if $(filter no,$(URING)),-nouring)

ifneq ($(SANITIZER),)
ALL_CFLAGS += -fsanitize=$(SANITIZER) -fno-omit-frame-pointer -fno-sanitize-recover=all
ALL_LDFLAGS += -fsanitize=$(SANITIZER)
endif

# liburing: compile and link a tiny probe, as liburing's own configure does.
HASH := \#
ifneq ($(URING),no)
HAVE_URING := $(shell printf '$(HASH)include <liburing.h>\nint main(void){struct io_uring r;\nreturn io_uring_queue_init(1, &r, 0);}\n' | \
		$(CC) -x c - -luring -o /dev/null 2>/dev/null && echo 1)
endif
ifeq ($(HAVE_URING),1)
ALL_CFLAGS += -DHAVE_LIBURING
URING_LIBS  = -luring
else ifeq ($(URING),yes)
$(error URING=yes: liburing is not usable with $(CC) (Debian: apt-get install liburing-dev))
endif

# libseccomp (Debian: libseccomp-dev) for echod's sandbox; without it the
# sandbox keeps its other parts and says at -v that seccomp is missing.
# SANDBOX_LOG=1: refused calls are logged by the kernel instead (maintainers).
HAVE_SECCOMP := $(shell printf '$(HASH)include <seccomp.h>\nint main(void){return !seccomp_init(0);}\n' | \
		$(CC) -x c - -lseccomp -o /dev/null 2>/dev/null && echo 1)
ifeq ($(HAVE_SECCOMP),1)
ALL_CFLAGS += -DHAVE_LIBSECCOMP $(if $(SANDBOX_LOG),-DECHOD_SANDBOX_LOG)
SECCOMP_LIBS = -lseccomp
endif

# The recorded configuration (see the top), compared and rewritten as the
# Makefile is read: a rule with a FORCE prerequisite would make `make -q` call
# every tree out of date.  `make -n` and `make -q` only look: they leave the
# file alone and take the tree as out of date when the configuration differs.
CONFIG_STAMP = $(B)/config
# Non-empty under make -n or -q (MAKEFLAGS starts with the one-letter flags).
LOOK_ONLY := $(findstring n,$(firstword -$(MAKEFLAGS)))$(findstring q,$(firstword -$(MAKEFLAGS)))
define CONFIG :=
CC        = $(CC) ($(shell $(CC) --version 2>/dev/null | head -n 1))
CFLAGS    = $(ALL_CFLAGS)
LDFLAGS   = $(ALL_LDFLAGS)
LIBS      = $(URING_LIBS) $(SECCOMP_LIBS)
liburing  = $(if $(HAVE_URING),yes,no) (URING=$(URING))
libseccomp = $(if $(HAVE_SECCOMP),yes,no)
SANITIZER = $(SANITIZER)
endef
ifneq ($(filter-out clean format,$(or $(MAKECMDGOALS),all)),)
ifneq ($(file <$(CONFIG_STAMP)),$(CONFIG))
ifneq ($(LOOK_ONLY),)
$(CONFIG_STAMP): FORCE
else
$(shell mkdir -p $(B))
$(file >$(CONFIG_STAMP),$(CONFIG))
endif
endif
endif
# Only when the file went away after the check above (make clean all).  The
# first rule in the file, so plain `make` needs to be told its goal is all.
.DEFAULT_GOAL := all
$(CONFIG_STAMP):
	@: $(if $(LOOK_ONLY),,$(shell mkdir -p $(@D))$(file >$@,$(CONFIG)))
FORCE:

# The source tree shows the two programs: src/echod/ (the server), src/echoc/
# (the client and load generator) and src/common/ (what both use).  Each
# program links only its own modules and the common ones.
COMMON = common/net common/opts common/cpus
ECHOD  = $(addprefix echod/,echod engine engine_iterative engine_threads \
           engine_epoll engine_uring workers spill privs conn conn_end log metrics metrics_http udp \
           config proxy proxy_stage activation inetd sandbox locality busy_poll) $(COMMON)
ECHOC  = $(addprefix echoc/,echoc echoc_config echoc_udp bench bench_pattern bench_worker \
           bench_tcp bench_udp bench_report hist) $(COMMON)
UNIT   = conn conn_end net config hist bench udp log proxy activation epoll uring workers spill \
         sandbox metrics cpus locality busy_poll
# Modules the unit tests link (the rest they #include whole, to reach statics).
UNIT_OBJS = $(COMMON) echod/busy_poll echod/config echod/conn echod/conn_end echod/log echod/metrics echod/proxy \
            echod/proxy_stage echod/spill \
            echoc/echoc_config echoc/bench_pattern echoc/hist

INCLUDES_common = -Isrc/common
INCLUDES_echod  = -Isrc/common -Isrc/echod
INCLUDES_echoc  = -Isrc/common -Isrc/echoc

all: $(B)/echod $(B)/echoc $(B)/echod-floor

$(B)/echod: $(ECHOD:%=$(B)/obj/%.o) $(CONFIG_STAMP)
	$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) -o $@ $(filter %.o,$^) -pthread $(URING_LIBS) $(SECCOMP_LIBS) -lm
$(B)/echoc: $(ECHOC:%=$(B)/obj/%.o) $(CONFIG_STAMP)
	$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) -o $@ $(filter %.o,$^) -pthread -lm
# The latency floor `make bench` prints first (bench/floor.c): echoc's histogram, nothing else.
$(B)/echod-floor: bench/floor.c $(B)/obj/echoc/hist.o $(CONFIG_STAMP)
	$(CC) $(ALL_CFLAGS) $(INCLUDES_echoc) $(ALL_LDFLAGS) -pthread -MMD -MP -o $@ $< \
		$(filter %.o,$^) -pthread -lm
# Objects go to $(B)/obj/<folder>/; $(*D) is the folder (common, echod or echoc) of the object.
$(B)/obj/%.o: src/%.c $(CONFIG_STAMP)
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(INCLUDES_$(*D)) -pthread -MMD -MP -c -o $@ $<
-include $(wildcard $(B)/obj/*/*.d $(B)/*.d)

# Unit tests (cmocka): one binary per module, tests/unit/test_<module>.c.
# `make unit` builds and runs them all, and fails if any of them fails.
UNIT_BINS = $(UNIT:%=$(B)/test_%)

$(B)/test_%: tests/unit/test_%.c $(UNIT_OBJS:%=$(B)/obj/%.o) $(CONFIG_STAMP)
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -Isrc/common -Isrc/echod -Isrc/echoc -pthread -MMD -MP -o $@ $< \
		$(filter %.o,$^) $(ALL_LDFLAGS) -lcmocka -pthread $(URING_LIBS) $(SECCOMP_LIBS) -lm
# test_uring #includes engine_uring.c, which restricts its rings (sandbox.c).
$(B)/test_uring: $(B)/obj/echod/sandbox.o

unit: $(UNIT_BINS)
	@rc=0; for t in $(UNIT_BINS); do echo "== $$t"; $$t || rc=1; done; exit $$rc

# The same programs and unit tests built with clang, so -Werror holds on both
# compilers.  The tree goes to $(B)-clang (build-clang by default).
clang:
	$(MAKE) CC=clang B=$(B)-clang all $(UNIT:%=$(B)-clang/test_%)

# The dependency step first, then a make of its own: the liburing probe above
# ran before the step could install it.  URING=no needs nothing.
run:
	@$(if $(filter no,$(URING)),:,sh scripts/install-deps.sh build)
	@$(MAKE) --no-print-directory all
	$(B)/echod

check:
	@bash tests/check.sh

# SUITE (matrix, uring-vs-epoll, udp, idle, placement, locality, latency, million) is passed on; QUICK and REPS reach
# bench/run.sh through the environment (make exports command-line variables).
bench: all
	@bash bench/run.sh $(SUITE)

# SOAK_S and SOAK_MODELS reach tests/soak/soak.py through the environment.
soak: all
	ECHOD_BIN=$(B)/echod $${PYTHON:-/usr/bin/python3} tests/soak/soak.py

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/man/man1
	install -m 755 $(B)/echod $(B)/echoc $(DESTDIR)$(PREFIX)/bin/
	install -m 644 man/echod.1 man/echoc.1 $(DESTDIR)$(PREFIX)/share/man/man1/

format:
	clang-format -i src/*/*.[ch] tests/unit/*.[ch] tests/fuzz/*.[ch] bench/*.c

clean:
	rm -rf build build-*

.PHONY: all unit clang run check bench soak install format clean FORCE

# ---------------------------------------------------------------------------
# Fuzzing (tests/fuzz/, docs/fuzzing.md): libFuzzer targets built with clang,
# ASan and UBSan in build-fuzz/.  `make fuzz` replays the regression inputs
# (tests/fuzz/regressions/<target>/), then fuzzes each target for FUZZ_S
# seconds from its seed corpus (tests/fuzz/corpus/<target>/) and prints
# executions and coverage per target.  FUZZ_TARGETS=conn picks some.
FUZZ_CC      ?= clang
FUZZ_S       ?= 60
FUZZ_TARGETS ?= options addr conn proxy http
FUZZ_B        = build-fuzz
FUZZ_CFLAGS   = -std=c11 -D_GNU_SOURCE $(WARN) -O1 -g -fno-omit-frame-pointer \
		-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
		-Isrc/common -Isrc/echod -Isrc/echoc
# The modules each target links (fuzz_options.c #includes bench.c).
FUZZ_SRC_options = src/common/opts.c src/common/net.c src/common/cpus.c src/echod/config.c \
		   src/echoc/echoc_config.c \
		   $(addprefix src/echoc/,bench_pattern.c bench_worker.c bench_tcp.c bench_udp.c \
		   bench_report.c hist.c)
FUZZ_SRC_addr    = src/common/net.c
FUZZ_SRC_conn    = src/echod/conn.c
FUZZ_SRC_proxy   = src/echod/proxy.c
FUZZ_SRC_http    = src/echod/metrics_http.c src/echod/metrics.c src/echod/log.c src/common/net.c

$(FUZZ_B)/fuzz_%: tests/fuzz/fuzz_%.c $(wildcard src/*/*.[ch])
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ $< $(FUZZ_SRC_$*) -pthread -lm

fuzz: $(FUZZ_TARGETS:%=$(FUZZ_B)/fuzz_%)
	@FUZZ_S=$(FUZZ_S) bash tests/fuzz/run.sh $(FUZZ_B) $(FUZZ_TARGETS)

.PHONY: fuzz
