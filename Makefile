.PHONY: demo test bench fuzz crash

# First command of the README: set up a fresh clone, show the QR chain once, then open the
# officers' console on demo data (seeded on first use under state/).
demo:
	scripts/bootstrap
	.venv/bin/jtca qr demo
	.venv/bin/jtca demo

# Second command: the whole test suite (ruff, mypy, import-linter, pytest).
test:
	scripts/test

bench:
	scripts/bootstrap
	.venv/bin/python bench/qr_verify.py
	.venv/bin/python bench/token_sign.py
	.venv/bin/python bench/officers.py
	.venv/bin/python bench/log.py
	pg="$$(scripts/pg-test-server start)" && .venv/bin/python bench/issue_interop.py --postgres "$$pg" && \
	  .venv/bin/python bench/city_scan.py --postgres "$$pg" && .venv/bin/python bench/lists.py && \
	  .venv/bin/python bench/tui_keys.py && \
	  .venv/bin/python bench/service.py --postgres "$$pg"; \
	  status=$$?; scripts/pg-test-server stop; exit $$status

# The long crash run (issue #14): 100 trials per operation (kill -9 at every token and file
# boundary and at random moments), each line 'crash <operation>: trials T, kills K, failures F'.
# The suite runs the same harness with 5 trials per operation.
crash:
	scripts/bootstrap
	JTCA_CRASH_TRIALS=$${JTCA_CRASH_TRIALS:-100} .venv/bin/python -m pytest tests/crash -q -s -p no:randomly

# The fuzz suite's long run (issue #14, point 3): every parser with 1,000,000 mutated inputs over
# all cores, a table of inputs, typed refusals, untyped exceptions and inputs over 1 s per parser;
# findings (input + traceback) under fuzz-findings/. FUZZ_ARGS="--inputs N --only qr." to narrow.
fuzz:
	scripts/bootstrap
	.venv/bin/python -m tests.fuzz.run --inputs 1000000 $(FUZZ_ARGS)
