# ternac: the two set-up commands are `make demo` and `make test`; each creates .venv and
# installs everything from pip the first time.
PY      ?= python3
VENV    := .venv
VPY     := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
TERNAC  := $(VENV)/bin/ternac
BOARD   ?= icebreaker
MODEL   ?= digits
# The LM (MODEL=shakespeare) is compiled for 32, 40 and 128 lanes: 32 (LM_CONFIG) by default.
LANES   ?= $(if $(filter shakespeare,$(MODEL)),32,8)
JOBS    ?= 2

.PHONY: demo test test-slow bench verilog bitstream program clean venv formal faults fuzz report check-report

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q -e ".[test]"
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	mkdir -p build
	$(TERNAC) run digits --backend verilator --lanes $(LANES) --json build/demo_digits.json
	$(TERNAC) generate --prompt "ROMEO:" --tokens 64 --backend verilator --json build/demo_generate.json
	$(TERNAC) run vit-digits --backend verilator --json build/demo_vit.json

test: $(STAMP)
	$(VPY) -m pytest -n $(JOBS) -m "not slow" tests

# The slow tests: place-and-route of a board bitstream, the co-simulated board over its
# UART, the full verilator CLI run (minutes each; see tests marked @pytest.mark.slow).
test-slow: $(STAMP)
	$(VPY) -m pytest -n $(JOBS) -m slow tests

# The stream benches' full cross product: every segment of every unit bench in each stall
# mode (none, idle, backpressure, both), and the protocol monitor on the units inside the
# digits and ViT Accelerators (make test: each unit without stalls and rotating through the
# stalled modes, and the digits Accelerator).
.PHONY: stream-modes
stream-modes: $(STAMP)
	$(VPY) -m pytest -n $(JOBS) tests/test_rtl_units.py tests/test_rtl_vector.py

# bench lm (ternac/bench.py): per LM configuration (iCEBreaker L=32 I2 and L=40 T3, ULX3S
# L=128) build/bench/lm-<name>.json: RTL cycles a token, the fraction of the weight-stream
# bound, Fmax and resources of its board build, tokens/s; and build/bench/lm-lane-scaling.json
# (modelled: the cycles a token at 32, 128 and 256 lanes, and the bottleneck). The builds go
# through the sweep's record cache (build/sweep/cache): a re-run with the same inputs builds
# nothing; a changed tree builds again (the ULX3S L=128 place and route: routing alone did
# not finish in 10 minutes on an unloaded core). BENCH_NO_BUILD=1: no board builds (resources modelled).
bench: $(STAMP)
	mkdir -p build/bench
	$(TERNAC) run digits --backend verilator --lanes 8 --json build/bench/digits_L8.json
	$(TERNAC) run digits --backend verilator --lanes 32 --json build/bench/digits_L32.json
	$(TERNAC) bench numerics --json build/bench/numerics.json
	$(TERNAC) generate --prompt "ROMEO:" --tokens 64 --backend verilator --json build/bench/generate_L32.json
	$(VPY) -m ternac.sim.simspeed --tokens 16 --json build/bench/simspeed.json
	nice -n 5 $(TERNAC) bench lm --out build/bench $(if $(BENCH_NO_BUILD),--no-build)

# Every formal proof (SymbiYosys from pip; k-induction or BMC per task, see formal/units.py);
# `make test` runs the fast ones through tests/test_formal.py.
formal: $(STAMP)
	mkdir -p build/formal
	$(VPY) -m formal --json build/formal/formal.json

# Fault injection on the UART host link in co-simulation (sim/faults.py): 10,000 faults of
# every kind in both directions, seed 1, in one simulator start; counts in build/faults.json
# (exit 1 on any silent corruption or hang); `make test` runs a slice (tests/test_faults.py).
FAULTS ?= 10000
FAULT_SEED ?= 1

faults: $(STAMP)
	mkdir -p build
	nice -n 5 $(VPY) -m ternac.sim.faults --seed $(FAULT_SEED) --faults $(FAULTS) --json build/faults.json

# Fuzzing with hypothesis (tests/test_fuzz.py, tests/test_fuzz_rtl.py): the frame parsers
# (Python model and the RTL receiver co-simulated), the weight-image loader and checkpoint
# import; 100,000 examples, derandomized (the same every run); `make test` runs the "ci"
# profile (a few thousand). TERNAC_FUZZ_COUNTS="image=50000" changes a target's count.
fuzz: $(STAMP)
	TERNAC_FUZZ_PROFILE=fuzz nice -n 5 $(VPY) -m pytest -n 0 -q -s -p no:cacheprovider \
	  --hypothesis-show-statistics \
	  --durations=0 tests/test_fuzz.py tests/test_fuzz_rtl.py

verilog: $(STAMP)
	$(TERNAC) verilog --out build/verilog --lanes $(LANES)

bitstream: $(STAMP)
	$(TERNAC) build --board $(BOARD) --model $(MODEL) --lanes $(LANES) $(if $(FREQ),--freq $(FREQ)) $(if $(PNR_SEED),--pnr-seed $(PNR_SEED))

program: $(STAMP)
	$(TERNAC) program --board $(BOARD) --lanes $(LANES)

# One unit's cocotb bench against golden (ternac/simcli.py): UNIT is streamer, engine,
# requantizer, activation, norm, eltwise, shiftmax, dot or top; SEED and STALL optional.
# WAVES=1 writes build/waves/$(UNIT).vcd, WAVES=fst build/waves/$(UNIT).fst where Verilator's
# FST writer builds (else a VCD, and ternac says why). WAVES is taken out of the command's
# environment: cocotb would read it and trace every build.
.PHONY: sim
UNIT ?= engine
WAVES_FILE = build/waves/$(UNIT).$(if $(filter fst FST,$(WAVES)),fst,vcd)

sim: $(STAMP)
	env -u WAVES $(TERNAC) sim $(UNIT) $(if $(filter-out 0,$(WAVES)),--waves $(WAVES_FILE)) \
	  $(if $(SEED),--seed $(SEED)) $(if $(STALL),--stall $(STALL))

# Design-space sweep (ternac/sweep.py): every lane count (and FREQ list, MHz) of MODEL on
# BOARD as a Ray task: lower, build the bitstream, one RTL run, report; records cached in
# build/sweep/cache by their inputs' hash, so a re-run builds only new points. LANES is a
# comma-separated list here (default 8,16,32). ADDRESS=host:port runs on a Ray cluster.
# Out: build/sweep/$(BOARD)-$(MODEL)/sweep.{json,png}.
.PHONY: sweep
SWEEP_LANES = $(if $(filter command line environment,$(origin LANES)),$(LANES),8,16,32)

sweep: $(STAMP)
	$(TERNAC) sweep --board $(BOARD) --model $(MODEL) --lanes $(SWEEP_LANES) \
	  $(if $(FREQ),--freq $(FREQ)) $(if $(ADDRESS),--address $(ADDRESS)) \
	  --out build/sweep/$(BOARD)-$(MODEL)

# The power and throughput report (ternac/report.py): BOARD defaults to icebreaker and the
# model to shakespeare; a model that does not fit BOARD falls back to the best board it
# builds for, and the report says so. Out: $(REPORT_OUT)/report.{json,md,html} and PNGs.
REPORT_MODEL = $(if $(filter command line environment,$(origin MODEL)),$(MODEL),shakespeare)
REPORT_OUT  ?= build/report-$(BOARD)-$(REPORT_MODEL)

report: $(STAMP)
	$(TERNAC) report --board $(BOARD) --model $(REPORT_MODEL) --out $(REPORT_OUT) --fallback

# Renders report.html in headless Chromium and saves a screenshot for a person to look at.
# Installs Debian's chromium package (apt-get install -y chromium) when it is missing: no
# pip package ships a browser. Runs `make report` first if there is no report.
check-report: $(STAMP)
	test -f $(REPORT_OUT)/report.html || $(MAKE) report BOARD=$(BOARD) MODEL=$(REPORT_MODEL)
	command -v chromium >/dev/null || (apt-get update && apt-get install -y chromium)
	chromium --headless --no-sandbox --disable-gpu --hide-scrollbars \
	  --screenshot=$(abspath $(REPORT_OUT))/screenshot.png --window-size=1200,6000 \
	  file://$(abspath $(REPORT_OUT))/report.html
	@echo "screenshot: $(REPORT_OUT)/screenshot.png"

clean:
	rm -rf build sim_build
