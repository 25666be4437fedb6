# Shortcuts for `python3 course.py ...`, which needs nothing but Python 3.10+:
#   make lab    set up, then open the course in JupyterLab
#   make test   set up, then run the whole test suite (what CI runs)
#   make screenshots   run the browser tests and keep their explorer screenshots in docs/explorers/

PYTHON ?= python3

.PHONY: lab test setup doctor screenshots clean

lab:
	$(PYTHON) course.py lab

test:
	$(PYTHON) course.py test

setup:
	$(PYTHON) course.py setup

doctor:
	$(PYTHON) course.py doctor

screenshots: setup
	MINATTN_SCREENSHOTS=docs/explorers .venv/bin/python -m pytest -n 0 tests/test_browser.py

clean:
	rm -rf .venv
