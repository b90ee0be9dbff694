# fabship: `make demo` runs the main job, `make test` the whole suite. Both set up first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DEB_PACKAGES := openssh-server openssh-client chromium chromium-driver python3-venv systemd procps \
	cron
NPM_PREFIX := .tools/npm
GROOVY_LINT := $(NPM_PREFIX)/node_modules/.bin/npm-groovy-lint

.PHONY: setup system-packages test demo demo-down clean mutants

setup: system-packages $(VENV)/.installed $(GROOVY_LINT)

system-packages:
	@sh tools/system-deps.sh $(DEB_PACKAGES)

$(VENV)/.installed: setup.cfg pyproject.toml services/hello/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test]' \
		-r services/hello/requirements.txt
	touch $@

$(GROOVY_LINT):
	npm install --silent --no-audit --no-fund --prefix $(NPM_PREFIX) npm-groovy-lint@15

# The whole suite is the gates: every test (unit gate) with coverage, pylint, metrics.
test: setup
	$(PY) -m ci

# Mutation testing (not part of `make test`): mutmut mutates the pure layers and the host
# scripts' builders, runs the fast tests against each mutant, then prints the score and
# every surviving mutant; fails below MUTATION_FAIL_UNDER percent. A fresh ./mutants each
# run; [mutmut] in setup.cfg says what to mutate and which tests to run.
MUTMUT_JOBS ?= 2
MUTATION_FAIL_UNDER ?= 90

mutants: $(VENV)/.mutation-installed
	rm -rf mutants && mkdir mutants
	$(VENV)/bin/mutmut run --max-children $(MUTMUT_JOBS) > mutants/run.log 2>&1 || \
		{ tail -c 4000 mutants/run.log; exit 1; }
	$(PY) tools/mutation_score.py --fail-under $(MUTATION_FAIL_UNDER)

$(VENV)/.mutation-installed: setup.cfg pyproject.toml
	@test -x $(PY) || $(MAKE) $(VENV)/.installed
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test,mutation]'
	touch $@

# The main job, rehearsed on this machine: local SSH hosts and an EC2 emulator, then
# gates -> launch -> deploy -> URLs. State in .rehearsal/; `make demo-down` stops it all.
demo: setup
	$(PY) -m fabship.deploy.rehearsal demo

demo-down:
	@if [ -x $(PY) ]; then $(PY) -m fabship.deploy.rehearsal down; else echo "nothing to stop"; fi

clean:
	rm -rf $(VENV) .tools reports .coverage .rehearsal mutants
