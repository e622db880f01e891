# Install the client's dato_dist on this host (the part that could be baked into an AMI).
set -e
if [ -n "$DATO_HOST_PYTHON_GIVEN" ]; then
  echo "using the configured host python: $DATO_PYTHON"
  exit 0
fi
if [ ! -x "$DATO_PYTHON" ]; then
  python3 -m venv --system-site-packages "$DATO_BASE/venv"
fi
wheel=$(ls "$DATO_BUNDLE"/dist/dato_dist-*.whl 2>/dev/null | head -n 1)
extra=""
[ "$DATO_IDLE_ACTION" = terminate ] && extra="boto3"
if [ -n "$wheel" ]; then
  "$DATO_PYTHON" -m pip install -q "$wheel" $extra
else
  "$DATO_PYTHON" -m pip install -q "dato-dist==$DATO_VERSION" $extra
fi
