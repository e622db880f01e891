# Install the client's dato_dist on this host (the part that could be baked into an AMI).
set -e
if [ -n "$DATO_HOST_PYTHON_GIVEN" ]; then
  echo "using the configured host python: $DATO_PYTHON"
  exit 0
fi
# DATO_BASE_PYTHON (e.g. from variables_file): the interpreter the venv is made from.
if [ ! -x "$DATO_PYTHON" ]; then
  "${DATO_BASE_PYTHON:-python3}" -m venv --system-site-packages "$DATO_BASE/venv"
fi
wheel=$(ls "$DATO_BUNDLE"/dist/dato_dist-*.whl 2>/dev/null | head -n 1)
extra=""
[ "$DATO_IDLE_ACTION" = terminate ] && extra="boto3"
# The client's versions of the packages both sides must agree on (cloudpickle).
constraints=""
[ -s "$DATO_BUNDLE/dist/constraints.txt" ] && constraints="-c $DATO_BUNDLE/dist/constraints.txt"
if [ -n "$wheel" ]; then
  "$DATO_PYTHON" -m pip install -q $constraints "$wheel" $extra
else
  "$DATO_PYTHON" -m pip install -q $constraints "dato-dist==$DATO_VERSION" $extra
fi
# The host's Python must have the client's dato_dist version (and the host agent).
"$DATO_PYTHON" - <<PY
import dato_dist, dato_dist.ec2.agent, dato_dist.ec2.idle
v = dato_dist.__version__
assert v == "$DATO_VERSION", "this host has dato_dist %s, the client has $DATO_VERSION" % v
print("dato_dist", v, "ok on", "$DATO_HOST_ID", "in", __import__("sys").prefix)
PY
