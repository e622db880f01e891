# bootstrap_cmds from Ec2Config, in order; the first that fails fails the bootstrap.
if [ -s "$DATO_BUNDLE/bootstrap_cmds.sh" ]; then
  bash -e "$DATO_BUNDLE/bootstrap_cmds.sh"
fi
