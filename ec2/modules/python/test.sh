# The host's Python must have the client's dato_dist version (and the host agent).
"$DATO_PYTHON" - <<PY
import dato_dist, dato_dist.ec2.agent, dato_dist.ec2.idle
v = dato_dist.__version__
assert v == "$DATO_VERSION", "this host has dato_dist %s, the client has $DATO_VERSION" % v
print("dato_dist", v, "ok on", "$DATO_HOST_ID")
PY
