# Install the client's dato_dist on this host (the part that could be baked into an AMI).
set -e
if [ -n "$DATO_HOST_PYTHON_GIVEN" ]; then
  echo "using the configured host python: $DATO_PYTHON"
  exit 0
fi
# The bundle always carries a wheel of the client's installed dato-dist (ec2/bootstrap.py):
# dato-dist is not on the package index, so there is nothing to fall back to.
wheel=$(ls "$DATO_BUNDLE"/dist/dato_dist-*.whl 2>/dev/null | head -n 1)
if [ -z "$wheel" ]; then
  echo "the bundle has no dato_dist wheel (expected in $DATO_BUNDLE/dist)" >&2
  exit 1
fi
want_hash=$(cat "$DATO_BUNDLE/dist/wheel_hash")
# DATO_BASE_PYTHON (e.g. from variables_file): the interpreter the venv is made from.
if [ ! -x "$DATO_PYTHON" ]; then
  "${DATO_BASE_PYTHON:-python3}" -m venv --system-site-packages "$DATO_BASE/venv"
fi
extra=""
[ "$DATO_IDLE_ACTION" = terminate ] && extra="boto3"
# The client's versions of the packages both sides must agree on (cloudpickle).
constraints=""
[ -s "$DATO_BUNDLE/dist/constraints.txt" ] && constraints="-c $DATO_BUNDLE/dist/constraints.txt"
installed_hash() {
  "$DATO_PYTHON" -c 'from dato_dist import wheel; print(wheel.content_hash())' 2>/dev/null || true
}
"$DATO_PYTHON" -m pip install -q --disable-pip-version-check $constraints "$wheel" $extra
# pip keeps an installed dato-dist of the same version: another build of it (a reused venv)
# is replaced by the client's.
if [ "$(installed_hash)" != "$want_hash" ]; then
  "$DATO_PYTHON" -m pip install -q --disable-pip-version-check --force-reinstall --no-deps "$wheel"
fi
# The host's Python must have the client's dato_dist, file for file (and the host agent).
"$DATO_PYTHON" - <<PY
import sys
import dato_dist, dato_dist.ec2.agent, dato_dist.ec2.idle
from dato_dist import wheel
v, h = dato_dist.__version__, wheel.content_hash()
assert v == "$DATO_VERSION", "this host has dato_dist %s, the client has $DATO_VERSION" % v
assert h == "$want_hash", "this host's dato_dist is build %s, the client's is $want_hash" % h
print("dato_dist", v, "build", h, "ok on", "$DATO_HOST_ID", "in", sys.prefix)
PY
