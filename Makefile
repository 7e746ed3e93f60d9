# echod - one flat GNU Makefile.
#
#   make            build build/echod and build/echoc
#   make run        build and start echod on its default address
#   make check      install missing test dependencies (as root), build, run every test
#                   (tests/check.sh: gcc and clang builds, unit tests, then the unit
#                   and end-to-end tests under ASan+UBSan and TSan)
#   make unit       build and run the cmocka unit tests (tests/unit/)
#   make clang      build everything with clang too, in build-clang/
#   make bench      echod's models and other echo servers side by side, with
#                   echoc bench as the load (bench/run.sh); SUITE=uring-vs-epoll
#                   or SUITE=udp for a subset, QUICK=1 for short runs
#   make soak       mixed hostile clients on every engine, then descriptors,
#                   threads and RSS back to their baseline (tests/soak/soak.py);
#                   SOAK_S seconds per engine (default 60)
#   make install    PREFIX=/usr/local DESTDIR=
#
# SANITIZER=address,undefined or SANITIZER=thread builds an instrumented tree
# in build-<sanitizer>/.  User CFLAGS are respected.

CC        ?= cc
CFLAGS    ?= -O2 -g
PREFIX    ?= /usr/local
WARN       = -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes
ALL_CFLAGS = -std=c11 -D_GNU_SOURCE $(WARN) $(CFLAGS)
ALL_LDFLAGS = $(LDFLAGS)
B         ?= build

ifneq ($(SANITIZER),)
B          = build-$(subst $(comma),-,$(SANITIZER))
ALL_CFLAGS += -fsanitize=$(SANITIZER) -fno-omit-frame-pointer -fno-sanitize-recover=all
ALL_LDFLAGS += -fsanitize=$(SANITIZER)
endif
comma := ,

# liburing: compile a tiny probe, as liburing's own configure does.
HASH := \#
HAVE_URING := $(shell printf '$(HASH)include <liburing.h>\nint main(void){struct io_uring r;\nreturn io_uring_queue_init(1, &r, 0);}\n' | \
		$(CC) -x c - -luring -o /dev/null 2>/dev/null && echo 1)
ifeq ($(HAVE_URING),1)
ALL_CFLAGS += -DHAVE_LIBURING
URING_LIBS  = -luring
endif

# The source tree shows the two programs: src/echod/ (the server), src/echoc/
# (the client and load generator) and src/common/ (what both use).  Each
# program links only its own modules and the common ones.
COMMON = common/net common/config
ECHOD  = $(addprefix echod/,echod engine engine_iterative engine_threads \
           engine_epoll engine_uring privs conn log metrics udp) $(COMMON)
ECHOC  = $(addprefix echoc/,echoc echoc_udp bench hist) $(COMMON)
UNIT   = conn net config hist bench udp
# Modules the unit tests link (the rest they #include whole, to reach statics).
UNIT_OBJS = $(COMMON) echod/conn echod/log echod/metrics

INCLUDES_common = -Isrc/common
INCLUDES_echod  = -Isrc/common -Isrc/echod
INCLUDES_echoc  = -Isrc/common -Isrc/echoc

all: $(B)/echod $(B)/echoc

$(B)/echod: $(ECHOD:%=$(B)/obj/%.o)
	$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) -o $@ $^ -pthread $(URING_LIBS) -lm
$(B)/echoc: $(ECHOC:%=$(B)/obj/%.o)
	$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) -o $@ $^ -pthread -lm
# Objects go to $(B)/obj/<folder>/; $(*D) is the folder (common, echod or echoc) of the object.
$(B)/obj/%.o: src/%.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(INCLUDES_$(*D)) -pthread -MMD -MP -c -o $@ $<
-include $(wildcard $(B)/obj/*/*.d $(B)/*.d)

# Unit tests (cmocka): one binary per module, tests/unit/test_<module>.c.
# `make unit` builds and runs them all, and fails if any of them fails.
UNIT_BINS = $(UNIT:%=$(B)/test_%)

$(B)/test_%: tests/unit/test_%.c $(UNIT_OBJS:%=$(B)/obj/%.o)
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -Isrc/common -Isrc/echod -Isrc/echoc -pthread -MMD -MP -o $@ $< \
		$(UNIT_OBJS:%=$(B)/obj/%.o) $(ALL_LDFLAGS) -lcmocka -pthread -lm

unit: $(UNIT_BINS)
	@rc=0; for t in $(UNIT_BINS); do echo "== $$t"; $$t || rc=1; done; exit $$rc

# The same programs and unit tests built with clang, so -Werror holds on both
# compilers.  The tree goes to $(B)-clang (build-clang by default).
clang:
	$(MAKE) CC=clang B=$(B)-clang all $(UNIT:%=$(B)-clang/test_%)

run: all
	$(B)/echod

check:
	@bash tests/check.sh

# SUITE (matrix, uring-vs-epoll, udp) is passed on; QUICK and REPS reach
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
	clang-format -i src/*/*.[ch] tests/unit/*.c

clean:
	rm -rf build build-*

.PHONY: all unit clang run check bench soak install format clean
