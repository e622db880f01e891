# additional_packages, @required_packages and bootstrap_python_packages (files, globbed).
set -e
if [ -s "$DATO_BUNDLE/additional_packages.txt" ]; then
  "$DATO_PYTHON" -m pip install -q -r "$DATO_BUNDLE/additional_packages.txt"
fi
set -- "$DATO_BUNDLE"/packages/*
if [ -e "$1" ]; then
  "$DATO_PYTHON" -m pip install -q "$@"
fi
