#!/usr/bin/env bash
# Scaledkite ECR login. The agent's environment hook runs it before each job.
#
# It writes docker credentials for each registry of scaledkite:ecrRegistries into the docker config
# (so `docker` in the job, talking to the dind sidecar, can pull and push), using the pod's own IAM
# role from EKS Pod Identity or IRSA: no long-lived keys and no custom image. It needs bash, curl
# (7.75 or later, for --aws-sigv4) and jq, which every stock buildkite/agent image has.
#
# ECR tokens last 12 hours. Endpoints follow the AWS SDKs' variables (AWS_ENDPOINT_URL_STS,
# AWS_ENDPOINT_URL_ECR), which the tests point at local stand-ins.
set -euo pipefail

registries_file="${SCALEDKITE_ECR_REGISTRIES_FILE:-$(dirname "$0")/ecr-registries}"
config_dir="${DOCKER_CONFIG:-$HOME/.docker}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

say() { echo "scaledkite ecr-login: $*" >&2; }
fail() { say "$*"; exit 1; }

# One text field of an XML answer (STS answers in XML).
xml_field() { tr -d '\r\n' <"$1" | grep -o "<$2>[^<]*</$2>" | head -n 1 | sed -e "s#<$2>##" -e "s#</$2>##"; }
# An AWS error answer, in one line.
aws_error() { jq -r '(.__type // .code // "") + ": " + (.message // .Message // "")' "$1" 2>/dev/null || head -c 200 "$1"; }

# Prints the role's credentials as three lines: access key id, secret key, session token.
# Returns 3 when the pod has no AWS identity at all.
credentials() {
  if [[ -n "${AWS_CONTAINER_CREDENTIALS_FULL_URI:-}" ]]; then
    # EKS Pod Identity: the node's agent hands out the role's credentials.
    local token=""
    [[ -n "${AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE:-}" ]] && token="$(cat "$AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE")"
    local code
    code="$(curl -s -o "$work/creds" -w '%{http_code}' --retry 3 --retry-connrefused --max-time 10 \
      -H "Authorization: $token" "$AWS_CONTAINER_CREDENTIALS_FULL_URI")" \
      || fail "cannot reach EKS Pod Identity at $AWS_CONTAINER_CREDENTIALS_FULL_URI; check that the eks-pod-identity-agent add-on runs on this node"
    [[ "$code" == 200 ]] || fail "EKS Pod Identity refused ($code $(head -c 200 "$work/creds")); check the pod identity association of service account ${SCALEDKITE_SERVICE_ACCOUNT:-scaledkite-worker}"
    jq -er '.AccessKeyId, .SecretAccessKey, .Token' "$work/creds" || fail "EKS Pod Identity answered without credentials"
  elif [[ -n "${AWS_WEB_IDENTITY_TOKEN_FILE:-}" && -n "${AWS_ROLE_ARN:-}" ]]; then
    # IRSA: trade the service account token for the role's credentials.
    local region="${AWS_REGION:-${AWS_DEFAULT_REGION:-us-east-1}}"
    local suffix="amazonaws.com"
    [[ "$region" == cn-* ]] && suffix="amazonaws.com.cn"
    local sts="${AWS_ENDPOINT_URL_STS:-https://sts.$region.$suffix}"
    local code
    code="$(curl -s -o "$work/sts" -w '%{http_code}' --retry 3 --retry-connrefused --max-time 10 "${sts%/}/" \
      --data-urlencode "Action=AssumeRoleWithWebIdentity" --data-urlencode "Version=2011-06-15" \
      --data-urlencode "RoleArn=$AWS_ROLE_ARN" --data-urlencode "RoleSessionName=scaledkite-ecr-login" \
      --data-urlencode "WebIdentityToken@$AWS_WEB_IDENTITY_TOKEN_FILE")" \
      || fail "cannot reach STS at $sts; check the pod's network access to AWS"
    [[ "$code" == 200 ]] || fail "STS refused the service account token for $AWS_ROLE_ARN ($code $(xml_field "$work/sts" Code): $(xml_field "$work/sts" Message)); check the role's trust policy and the cluster's IAM OIDC provider"
    local id secret session
    id="$(xml_field "$work/sts" AccessKeyId)"
    secret="$(xml_field "$work/sts" SecretAccessKey)"
    session="$(xml_field "$work/sts" SessionToken)"
    [[ -n "$id" && -n "$secret" ]] || fail "STS answered without credentials"
    printf '%s\n%s\n%s\n' "$id" "$secret" "$session"
  elif [[ -n "${AWS_ACCESS_KEY_ID:-}" && -n "${AWS_SECRET_ACCESS_KEY:-}" ]]; then
    printf '%s\n%s\n%s\n' "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" "${AWS_SESSION_TOKEN:-}"
  else
    return 3
  fi
}

[[ -r "$registries_file" ]] || fail "no registry list at $registries_file; run pulumi up to recreate the scaledkite-ecr-login ConfigMap"
mapfile -t hosts < <(grep -Ev '^[[:space:]]*(#|$)' "$registries_file")
[[ ${#hosts[@]} -gt 0 ]] || exit 0

rc=0
creds="$(credentials)" || rc=$?
if [[ $rc -eq 3 ]]; then
  say "no AWS identity in this pod (service account ${SCALEDKITE_SERVICE_ACCOUNT:-unknown}), so no ECR login; give the queue the scaledkite-worker service account, or one bound to a role that may pull"
  exit 0
fi
[[ $rc -eq 0 ]] || exit 1
{ read -r key_id; read -r secret_key; read -r session_token || true; } <<<"$creds"

# ECR tokens are regional: one GetAuthorizationToken per region, for all of its accounts.
declare -A accounts=()
for host in "${hosts[@]}"; do
  [[ "$host" =~ ^([0-9]{12})\.dkr\.ecr(-fips)?\.([a-z0-9-]+)\.amazonaws\.com(\.cn)?$ ]] \
    || fail "$host is not an ECR registry host; fix scaledkite:ecrRegistries"
  region="${BASH_REMATCH[3]}"
  accounts[$region]="${accounts[$region]:-} ${BASH_REMATCH[1]}"
done

# The docker config holds the tokens: only this user may read it.
umask 077
mkdir -p "$config_dir"
config="$config_dir/config.json"
[[ -s "$config" ]] || echo '{}' >"$config"
chmod 600 "$config"

for region in "${!accounts[@]}"; do
  suffix="amazonaws.com"
  [[ "$region" == cn-* ]] && suffix="amazonaws.com.cn"
  endpoint="${AWS_ENDPOINT_URL_ECR:-https://api.ecr.$region.$suffix}"
  # shellcheck disable=SC2086 # the account list splits on purpose
  jq -cn --args '{registryIds: $ARGS.positional}' ${accounts[$region]} >"$work/request"
  # The keys go to curl on stdin, never on its command line.
  code="$(curl -s -o "$work/answer" -w '%{http_code}' --retry 3 --retry-connrefused --max-time 15 -K - "${endpoint%/}/" <<EOF
aws-sigv4 = "aws:amz:$region:ecr"
user = "$key_id:$secret_key"
header = "x-amz-security-token: $session_token"
header = "X-Amz-Target: AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken"
header = "Content-Type: application/x-amz-json-1.1"
data-binary = "@$work/request"
EOF
  )" || fail "cannot reach ECR in $region at $endpoint; check the pod's network access to AWS"
  [[ "$code" == 200 ]] || fail "ECR in $region refused a login for accounts${accounts[$region]} ($code $(aws_error "$work/answer")); the workers' role needs ecr:GetAuthorizationToken (pulumi up grants it)"
  while IFS=$'\t' read -r proxy auth expires; do
    host="${proxy#https://}"
    jq --arg host "$host" --arg auth "$auth" '.auths[$host] = {auth: $auth}' "$config" >"$work/config" && cat "$work/config" >"$config"
    echo "scaledkite ecr-login: docker is logged in to $host (until $expires)"
  done < <(jq -r '.authorizationData[] | [.proxyEndpoint, .authorizationToken, (.expiresAt | floor | todate)] | @tsv' "$work/answer")
done

for host in "${hosts[@]}"; do
  jq -e --arg host "$host" '.auths[$host].auth' "$config" >/dev/null || fail "ECR gave no token for $host; check that the account id and region are right"
done
