# Sourced by the launch scripts: the Python to run, without activating anything.
# PYTHON from the environment wins; else the project's .venv (made by tools/setup_env.sh); else python3 on PATH.
if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then
        PYTHON="$(pwd)/.venv/bin/python"
    else
        PYTHON=python3
    fi
fi
"$PYTHON" -c 'import torch, mmengine' 2>/dev/null || {
    echo "error: $PYTHON cannot import torch and mmengine; run bash tools/setup_env.sh first (it creates .venv)," \
         "or set PYTHON to an interpreter that has the stack" >&2
    exit 1
}
