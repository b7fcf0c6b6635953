# runra_obs — PGXS build.
#
# One version source: EXTVERSION (runra_obs.control must say the same; the
# build stops if it does not).  The install script of that version is built
# by concatenating extension/parts/*.sql in name order, so each subsystem
# owns one part and nobody edits a generated file.  Released versions keep
# their install script frozen (extension/runra_obs--0.1.0.sql), and every
# schema change since ships as an upgrade script
# (extension/runra_obs--FROM--TO.sql); t/003_upgrade.pl proves that updating
# a released version gives the same catalog as a new install.
#
#   make              build runra_obs.so and the install script
#   make install      install into the PostgreSQL that pg_config names
#   make test         every test, on a private copy of PostgreSQL with the
#                     extension installed into it (tmp_install/): no root
#                     needed, nothing system-wide touched

EXTENSION  = runra_obs
EXTVERSION = 0.2.0
MODULE_big = runra_obs

PG_CONFIG ?= pg_config

# The OTLP receiver's protobuf code is generated from our own schema by
# protoc-c (protobuf-c-compiler); the generated files are not committed.
PROTO_DIR = src/ingest/otlp/proto
PROTOS    = $(sort $(wildcard $(PROTO_DIR)/*.proto))
PROTO_C   = $(PROTOS:.proto=.pb-c.c)
PROTO_H   = $(PROTOS:.proto=.pb-c.h)

SRCS  = $(filter-out $(PROTO_C),$(sort $(wildcard src/*.c src/*/*.c src/*/*/*.c))) $(PROTO_C)
OBJS  = $(SRCS:.c=.o)

EXT_SCRIPT = extension/$(EXTENSION)--$(EXTVERSION).sql
SQL_PARTS      = $(sort $(wildcard extension/parts/*.sql))
DATA_built     = $(EXT_SCRIPT)
DATA           = $(filter-out $(EXT_SCRIPT),$(wildcard extension/$(EXTENSION)--*.sql))

CONTROL_VERSION := $(shell sed -n "s/^default_version = '\(.*\)'$$/\1/p" $(EXTENSION).control)
ifneq ($(CONTROL_VERSION),$(EXTVERSION))
$(error $(EXTENSION).control says default_version '$(CONTROL_VERSION)' but EXTVERSION is $(EXTVERSION))
endif

PG_CPPFLAGS = -DRUNRA_OBS_VERSION='"$(EXTVERSION)"' -I$(srcdir)/src $(shell pkg-config --cflags libmicrohttpd libcurl libcjson zlib libprotobuf-c) \
              -idirafter $(shell $(PG_CONFIG) --includedir)
PG_CFLAGS   = -Wall -Wmissing-prototypes -Werror=implicit-function-declaration
SHLIB_LINK  = $(shell pkg-config --libs libmicrohttpd libcurl libcjson zlib libprotobuf-c) -L$(shell $(PG_CONFIG) --libdir) -lpq

EXTRA_CLEAN = $(EXT_SCRIPT) $(PROTO_C) $(PROTO_H) tmp_install tmp_check results regression.diffs regression.out log

PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

$(PROTO_DIR)/%.pb-c.c $(PROTO_DIR)/%.pb-c.h: $(PROTO_DIR)/%.proto
	protoc-c --proto_path=$(PROTO_DIR) --c_out=$(PROTO_DIR) $<

# every OTLP file may include any generated header
$(filter src/ingest/otlp/%,$(OBJS) $(OBJS:.o=.bc)): $(PROTO_H)

$(EXT_SCRIPT): $(SQL_PARTS) Makefile
	@{ printf '%s\n' '-- Generated from extension/parts/*.sql by the Makefile; edit the parts.' \
	     '\echo Use "CREATE EXTENSION $(EXTENSION)" to load this file. \quit'; \
	   for f in $(SQL_PARTS); do printf '\n-- ==== %s\n' "$$f"; cat "$$f"; done; } > $@

# ---------------------------------------------------------------------------
# Tests.  A private copy of the server binaries lives in tmp_install/ (the
# server finds its share and lib directories relative to its own binary, the
# way PostgreSQL's own "make check" works), the extension is installed into
# it with DESTDIR, and pg_regress and prove run against that copy.

PG_BINDIR   := $(shell $(PG_CONFIG) --bindir)
PG_SHAREDIR := $(shell $(PG_CONFIG) --sharedir)
PG_LIBDIR_P := $(shell $(PG_CONFIG) --pkglibdir)
PG_PGXSDIR  := $(abspath $(dir $(PGXS))../..)
TMP_INSTALL := $(CURDIR)/tmp_install
TMP_BINDIR  := $(TMP_INSTALL)$(PG_BINDIR)
PG_REGRESS_BIN := $(PG_PGXSDIR)/src/test/regress/pg_regress
REGRESS_TESTS  := $(basename $(notdir $(sort $(wildcard sql/*.sql))))

# Test clusters are UTF8 (the extension requires it) and sort the same on
# every machine, whatever the caller's locale.
export LANG   := C.UTF-8
export LC_ALL := C.UTF-8

.PHONY: temp-install test regress-check tap-check bench

# Citus for the Citus TAP tests (t/lib/CitusCluster.pm): CITUS_DIR is the
# DESTDIR tree scripts/citus-build prints (built once per machine, cached
# outside the clone); scripts/test passes it.  Its library and extension
# files are copied into tmp_install/; without it the Citus tests skip.
#   make test CITUS_DIR=$(scripts/citus-build)
CITUS_DIR ?=

temp-install: all
	rm -rf $(TMP_INSTALL)
	mkdir -p $(TMP_INSTALL)$(dir $(PG_BINDIR)) $(TMP_INSTALL)$(dir $(PG_SHAREDIR))
	cp -a $(abspath $(PG_BINDIR)/..) $(TMP_INSTALL)$(dir $(abspath $(PG_BINDIR)/..))
	cp -a $(PG_SHAREDIR) $(TMP_INSTALL)$(dir $(PG_SHAREDIR))
	$(MAKE) install DESTDIR=$(TMP_INSTALL) >/dev/null
	$(if $(CITUS_DIR),cp -R $(CITUS_DIR)$(PG_LIBDIR_P)/. $(TMP_INSTALL)$(PG_LIBDIR_P)/ && \
	  cp -R $(CITUS_DIR)$(PG_SHAREDIR)/. $(TMP_INSTALL)$(PG_SHAREDIR)/)

regress-check: temp-install
	$(PG_REGRESS_BIN) --bindir=$(TMP_BINDIR) --temp-instance=tmp_check/regress \
	  --temp-config=test/regress.conf --inputdir=. --outputdir=tmp_check \
	  --dbname=contrib_regression $(REGRESS_TESTS)

tap-check: temp-install
	rm -rf tmp_check/tap && mkdir -p tmp_check/tap
	TESTDIR='$(CURDIR)/tmp_check/tap' PATH="$(TMP_BINDIR):$$PATH" \
	  PG_REGRESS='$(PG_REGRESS_BIN)' PERL5LIB='$(PG_PGXSDIR)/src/test/perl:$(CURDIR)/t/lib' \
	  RUNRA_OBS_SRC='$(CURDIR)' \
	  prove $(PROVE_FLAGS) $(if $(PROVE_TESTS),$(PROVE_TESTS),t/*.pl)

test: regress-check tap-check
