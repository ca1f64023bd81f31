"""A corpus of fake credentials in the formats providers publish, each in the code, config and
script files it would leak from. It measures the secret scrubber (benchmarks/bench_dataset.py,
`secret_recall`) and feeds its tests (tests/trainer/test_datasets_secrets.py).

Why generated: no scanner's test fixtures ship in an installed package here, and the rules the
scrubber uses (Betterleaks, see appliance/secret_rules.py) must not be measured on their own
examples. So every value below is drawn at random from the provider's documented token
layout (prefix, alphabet, length, separators), written down from the provider's own
documentation or announcement of the format, not from any scanner's rule. Where a provider
documents no prefix (a bare hex key, a UUID), the value sits under the variable name that the
provider's documentation or SDK uses for it, as real code does.

Nothing here is a real credential, and no literal token is stored: values are built at run time
from a seeded random generator, so the corpus is the same on every run.
"""

from __future__ import annotations

import base64
import json
import random
import string
import uuid
from collections.abc import Callable
from dataclasses import dataclass

LOWER, UPPER, DIGITS = string.ascii_lowercase, string.ascii_uppercase, string.digits
ALNUM = LOWER + UPPER + DIGITS
HEX = "0123456789abcdef"
B64 = ALNUM + "+/"
B64URL = ALNUM + "-_"
BASE32 = UPPER + "234567"


@dataclass(frozen=True)
class Entry:
    kind: str  # the provider format, e.g. "github-fine-grained-pat"
    filename: str
    text: str  # the file's content
    value: str  # what must not survive scrubbing


class Gen:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def s(self, chars: str, n: int) -> str:
        return "".join(self.rng.choice(chars) for _ in range(n))

    def alnum(self, n: int) -> str:
        return self.s(ALNUM, n)

    def hex(self, n: int) -> str:
        return self.s(HEX, n)

    def digits(self, n: int) -> str:
        return self.s(DIGITS, 1).replace("0", "1") + self.s(DIGITS, n - 1)

    def uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def b64(self, nbytes: int, alphabet: str = "std") -> str:
        raw = self.rng.randbytes(nbytes)
        text = base64.b64encode(raw) if alphabet == "std" else base64.urlsafe_b64encode(raw)
        return text.decode()

    def jwt(self, payload: dict | None = None, header: dict | None = None) -> str:
        def seg(obj) -> str:
            return (
                base64.urlsafe_b64encode(json.dumps(obj, separators=(",", ":")).encode()).decode().rstrip("=")
            )

        body = payload or {
            "sub": self.digits(9),
            "iss": "auth.corp.internal",
            "iat": 1767225600,
            "exp": 1767229200,
            "scope": "read write",
        }
        sig = base64.urlsafe_b64encode(self.rng.randbytes(32)).decode().rstrip("=")
        return f"{seg(header or {'alg': 'HS256', 'typ': 'JWT'})}.{seg(body)}.{sig}"


# (kind, the variable name code uses for it, a generator). Formats as the providers document them.
def _formats_source_hosting_and_ci(g: Gen) -> list[tuple[str, str, Callable[[], str]]]:
    """Source hosting and CI."""
    a, h, d, s = g.alnum, g.hex, g.digits, g.s  # noqa: F841 (not every group uses each)
    return [
        ("github-pat-classic", "GITHUB_TOKEN", lambda: "ghp_" + a(36)),
        ("github-oauth-token", "GH_OAUTH_TOKEN", lambda: "gho_" + a(36)),
        ("github-app-user-token", "GH_USER_TOKEN", lambda: "ghu_" + a(36)),
        ("github-app-installation-token", "GH_APP_TOKEN", lambda: "ghs_" + a(36)),
        ("github-refresh-token", "GH_REFRESH_TOKEN", lambda: "ghr_" + a(36)),
        ("github-fine-grained-pat", "GITHUB_PAT", lambda: f"github_pat_{a(22)}_{a(59)}"),
        ("gitlab-pat", "GITLAB_TOKEN", lambda: "glpat-" + s(B64URL, 20)),
        ("gitlab-pipeline-trigger", "CI_TRIGGER_TOKEN", lambda: "glptt-" + h(40)),
        ("gitlab-runner-token", "RUNNER_TOKEN", lambda: "glrt-" + s(B64URL, 20)),
        ("gitlab-deploy-token", "GITLAB_DEPLOY_TOKEN", lambda: "gldt-" + s(B64URL, 20)),
        ("bitbucket-app-password", "BITBUCKET_APP_PASSWORD", lambda: "ATBB" + a(28) + s(HEX.upper(), 8)),
        (
            "atlassian-api-token",
            "JIRA_API_TOKEN",
            lambda: "ATATT3xFfGF0" + s(B64URL, 171) + "=" + s(HEX.upper(), 8),
        ),
        ("circleci-personal-token", "CIRCLECI_TOKEN", lambda: f"CCIPAT_{a(22)}_{h(40)}"),
        ("buildkite-agent-token", "BUILDKITE_API_TOKEN", lambda: "bkua_" + h(40)),
        ("sonarqube-user-token", "SONAR_TOKEN", lambda: "squ_" + h(40)),
        ("sourcegraph-access-token", "SRC_ACCESS_TOKEN", lambda: "sgp_" + h(40)),
        ("sourcegraph-access-token-v2", "SRC_ACCESS_TOKEN", lambda: f"sgp_{h(16)}_{h(40)}"),
        ("pulumi-access-token", "PULUMI_ACCESS_TOKEN", lambda: "pul-" + h(40)),
        ("terraform-cloud-token", "TFE_TOKEN", lambda: f"{a(14)}.atlasv1.{s(ALNUM + '-_', 67)}"),
        ("doppler-service-token", "DOPPLER_TOKEN", lambda: "dp.st.prd." + a(40)),
        ("doppler-personal-token", "DOPPLER_TOKEN", lambda: "dp.pt." + a(43)),
        ("octopus-deploy-api-key", "OCTOPUS_API_KEY", lambda: "API-" + s(UPPER + DIGITS, 27)),
        ("jfrog-api-key", "ARTIFACTORY_API_KEY", lambda: "AKCp" + a(69)),
    ]


def _formats_package_registries(g: Gen) -> list[tuple[str, str, Callable[[], str]]]:
    """Package registries."""
    a, h, d, s = g.alnum, g.hex, g.digits, g.s  # noqa: F841 (not every group uses each)
    return [
        ("pypi-upload-token", "TWINE_PASSWORD", lambda: "pypi-AgEIcHlwaS5vcmc" + s(B64URL, 140)),
        ("npm-access-token", "NPM_TOKEN", lambda: "npm_" + a(36)),
        ("dockerhub-pat", "DOCKERHUB_TOKEN", lambda: "dckr_pat_" + s(B64URL, 27)),
        ("rubygems-api-key", "GEM_HOST_API_KEY", lambda: "rubygems_" + h(48)),
        ("nuget-api-key", "NUGET_API_KEY", lambda: "oy2" + s(LOWER + DIGITS, 43)),
        ("clojars-token", "CLOJARS_TOKEN", lambda: "CLOJARS_" + h(60)),
    ]


def _formats_cloud_and_infrastructure(g: Gen) -> list[tuple[str, str, Callable[[], str]]]:
    """Cloud and infrastructure."""
    a, h, d, s = g.alnum, g.hex, g.digits, g.s
    return [
        ("aws-access-key-id", "AWS_ACCESS_KEY_ID", lambda: "AKIA" + s(BASE32, 16)),
        ("aws-temporary-key-id", "AWS_ACCESS_KEY_ID", lambda: "ASIA" + s(BASE32, 16)),
        ("gcp-api-key", "GOOGLE_API_KEY", lambda: "AIza" + s(B64URL, 35)),
        ("gcp-oauth-client-secret", "GOOGLE_CLIENT_SECRET", lambda: "GOCSPX-" + s(B64URL, 28)),
        ("azure-ad-client-secret", "AZURE_CLIENT_SECRET", lambda: a(3) + "8Q~" + s(ALNUM + "_~.-", 34)),
        ("digitalocean-pat", "DIGITALOCEAN_TOKEN", lambda: "dop_v1_" + h(64)),
        ("digitalocean-oauth-token", "DO_OAUTH_TOKEN", lambda: "doo_v1_" + h(64)),
        ("digitalocean-refresh-token", "DO_REFRESH_TOKEN", lambda: "dor_v1_" + h(64)),
        ("databricks-token", "DATABRICKS_TOKEN", lambda: "dapi" + h(32)),
        ("heroku-api-key", "HEROKU_API_KEY", g.uuid),
        ("heroku-platform-token", "HEROKU_API_KEY", lambda: "HRKU-AA" + s(B64URL, 58)),
        ("hashicorp-vault-service-token", "VAULT_TOKEN", lambda: "hvs." + s(B64URL, 91)),
        ("hashicorp-vault-batch-token", "VAULT_TOKEN", lambda: "hvb." + s(B64URL, 138)),
        ("hashicorp-vault-legacy-token", "VAULT_TOKEN", lambda: "s." + a(24)),
        ("alibaba-access-key-id", "ALIBABA_CLOUD_ACCESS_KEY_ID", lambda: "LTAI" + a(20)),
        ("scaleway-secret-key", "SCW_SECRET_KEY", g.uuid),
        ("linode-token", "LINODE_TOKEN", lambda: h(64)),
        ("cloudflare-api-token", "CLOUDFLARE_API_TOKEN", lambda: s(B64URL, 40)),
        ("cloudflare-global-api-key", "CLOUDFLARE_API_KEY", lambda: h(37)),
        ("fly-io-token", "FLY_API_TOKEN", lambda: "FlyV1 fm2_" + s(B64, 300)),
        ("netlify-pat", "NETLIFY_AUTH_TOKEN", lambda: "nfp_" + a(36)),
        ("render-api-key", "RENDER_API_KEY", lambda: "rnd_" + a(32)),
        ("supabase-management-token", "SUPABASE_ACCESS_TOKEN", lambda: "sbp_" + h(40)),
        ("planetscale-service-token", "PLANETSCALE_SERVICE_TOKEN", lambda: "pscale_tkn_" + s(B64URL, 43)),
        ("planetscale-password", "DATABASE_PASSWORD", lambda: "pscale_pw_" + s(B64URL, 43)),
        ("neon-api-key", "NEON_API_KEY", lambda: "napi_" + s(LOWER + DIGITS, 64)),
        ("tailscale-auth-key", "TS_AUTHKEY", lambda: f"tskey-auth-{a(17)}-{a(33)}"),
        ("grafana-service-account-token", "GRAFANA_TOKEN", lambda: f"glsa_{a(32)}_{h(8)}"),
        ("grafana-cloud-token", "GRAFANA_CLOUD_TOKEN", lambda: "glc_" + g.b64(96)),
        ("datadog-api-key", "DD_API_KEY", lambda: h(32)),
        ("datadog-app-key", "DD_APP_KEY", lambda: h(40)),
        ("new-relic-user-key", "NEW_RELIC_API_KEY", lambda: "NRAK-" + s(UPPER + DIGITS, 27)),
        ("new-relic-license-key", "NEW_RELIC_LICENSE_KEY", lambda: h(36) + "NRAL"),
        (
            "dynatrace-api-token",
            "DT_API_TOKEN",
            lambda: f"dt0c01.{s(UPPER + DIGITS, 24)}.{s(UPPER + DIGITS, 64)}",
        ),
        ("sentry-user-token", "SENTRY_AUTH_TOKEN", lambda: "sntryu_" + h(64)),
        ("sentry-dsn", "SENTRY_DSN", lambda: f"https://{h(32)}@o{d(6)}.ingest.sentry.io/{d(7)}"),
        ("honeycomb-api-key", "HONEYCOMB_API_KEY", lambda: "hcaik_01" + s(LOWER + DIGITS, 56)),
        ("okta-api-token", "OKTA_API_TOKEN", lambda: "00" + s(B64URL, 40)),
        ("snyk-token", "SNYK_TOKEN", g.uuid),
        ("launchdarkly-sdk-key", "LD_SDK_KEY", lambda: "sdk-" + g.uuid()),
        ("launchdarkly-api-token", "LD_API_KEY", lambda: "api-" + g.uuid()),
    ]


def _formats_payments_and_commerce(g: Gen) -> list[tuple[str, str, Callable[[], str]]]:
    """Payments and commerce."""
    a, h, d, s = g.alnum, g.hex, g.digits, g.s  # noqa: F841 (not every group uses each)
    return [
        ("stripe-secret-key", "STRIPE_SECRET_KEY", lambda: "sk_live_" + a(99)),
        ("stripe-restricted-key", "STRIPE_API_KEY", lambda: "rk_live_" + a(99)),
        ("stripe-test-key", "STRIPE_SECRET_KEY", lambda: "sk_test_" + a(24)),
        ("stripe-webhook-secret", "STRIPE_WEBHOOK_SECRET", lambda: "whsec_" + a(32)),
        ("square-access-token", "SQUARE_ACCESS_TOKEN", lambda: "EAAA" + s(B64URL, 60)),
        ("square-oauth-secret", "SQUARE_APP_SECRET", lambda: "sq0csp-" + s(B64URL, 43)),
        (
            "paypal-braintree-token",
            "BRAINTREE_ACCESS_TOKEN",
            lambda: f"access_token$production${a(16)}${h(32)}",
        ),
        ("shopify-access-token", "SHOPIFY_ACCESS_TOKEN", lambda: "shpat_" + h(32)),
        ("shopify-custom-app-token", "SHOPIFY_TOKEN", lambda: "shpca_" + h(32)),
        ("shopify-private-app-password", "SHOPIFY_PASSWORD", lambda: "shppa_" + h(32)),
        ("shopify-shared-secret", "SHOPIFY_API_SECRET", lambda: "shpss_" + h(32)),
        ("paystack-secret-key", "PAYSTACK_SECRET_KEY", lambda: "sk_live_" + h(40)),
        ("flutterwave-secret-key", "FLW_SECRET_KEY", lambda: f"FLWSECK_TEST-{h(32)}-X"),
        ("razorpay-key-secret", "RAZORPAY_KEY_SECRET", lambda: a(24)),
        ("gocardless-token", "GOCARDLESS_ACCESS_TOKEN", lambda: "live_" + s(B64URL, 40)),
        ("coinbase-api-secret", "COINBASE_API_SECRET", lambda: a(32)),
        ("plaid-access-token", "PLAID_ACCESS_TOKEN", lambda: "access-production-" + g.uuid()),
        ("shippo-token", "SHIPPO_API_KEY", lambda: "shippo_live_" + h(40)),
        ("easypost-api-key", "EASYPOST_API_KEY", lambda: "EZAK" + h(54)),
    ]


def _formats_messaging_and_e_mail(g: Gen) -> list[tuple[str, str, Callable[[], str]]]:
    """Messaging and e-mail."""
    a, h, d, s = g.alnum, g.hex, g.digits, g.s
    return [
        ("slack-bot-token", "SLACK_BOT_TOKEN", lambda: f"xoxb-{d(12)}-{d(13)}-{a(24)}"),
        ("slack-user-token", "SLACK_USER_TOKEN", lambda: f"xoxp-{d(12)}-{d(12)}-{d(13)}-{h(32)}"),
        (
            "slack-app-level-token",
            "SLACK_APP_TOKEN",
            lambda: f"xapp-1-A{s(UPPER + DIGITS, 10)}-{d(13)}-{h(64)}",
        ),
        ("slack-config-token", "SLACK_CONFIG_TOKEN", lambda: f"xoxe.xoxp-1-{a(160)}"),
        (
            "slack-webhook",
            "SLACK_WEBHOOK_URL",
            lambda: (
                f"https://hooks.slack.com/services/T{s(UPPER + DIGITS, 8)}/B{s(UPPER + DIGITS, 10)}/{a(24)}"
            ),
        ),
        (
            "discord-bot-token",
            "DISCORD_TOKEN",
            lambda: f"{base64.b64encode(d(18).encode()).decode().rstrip('=')}.{s(B64URL, 6)}.{s(B64URL, 38)}",
        ),
        (
            "discord-webhook",
            "DISCORD_WEBHOOK_URL",
            lambda: f"https://discord.com/api/webhooks/{d(18)}/{s(B64URL, 68)}",
        ),
        ("telegram-bot-token", "TELEGRAM_BOT_TOKEN", lambda: f"{d(10)}:AA{s(B64URL, 33)}"),
        ("twilio-api-key", "TWILIO_API_KEY", lambda: "SK" + h(32)),
        ("twilio-auth-token", "TWILIO_AUTH_TOKEN", lambda: h(32)),
        ("sendgrid-api-key", "SENDGRID_API_KEY", lambda: f"SG.{s(B64URL, 22)}.{s(B64URL, 43)}"),
        ("mailgun-api-key", "MAILGUN_API_KEY", lambda: "key-" + h(32)),
        ("mailgun-api-key-v2", "MAILGUN_API_KEY", lambda: f"{h(32)}-{h(8)}-{h(8)}"),
        ("mailchimp-api-key", "MAILCHIMP_API_KEY", lambda: f"{h(32)}-us{g.rng.randint(1, 21)}"),
        ("mailchimp-transactional-key", "MANDRILL_API_KEY", lambda: "md-" + s(B64URL, 22)),
        ("postmark-server-token", "POSTMARK_SERVER_TOKEN", g.uuid),
        ("brevo-api-key", "BREVO_API_KEY", lambda: f"xkeysib-{h(64)}-{a(16)}"),
        ("resend-api-key", "RESEND_API_KEY", lambda: f"re_{a(8)}_{a(24)}"),
        (
            "microsoft-teams-webhook",
            "TEAMS_WEBHOOK_URL",
            lambda: (
                f"https://corp.webhook.office.com/webhookb2/{g.uuid()}@{g.uuid()}/IncomingWebhook/{h(32)}/"
                f"{g.uuid()}"
            ),
        ),
    ]


def _formats_saas_apis(g: Gen) -> list[tuple[str, str, Callable[[], str]]]:
    """SaaS APIs."""
    a, h, d, s = g.alnum, g.hex, g.digits, g.s
    return [
        ("openai-project-key", "OPENAI_API_KEY", lambda: f"sk-proj-{s(B64URL, 74)}T3BlbkFJ{s(B64URL, 74)}"),
        ("openai-legacy-key", "OPENAI_API_KEY", lambda: f"sk-{a(20)}T3BlbkFJ{a(20)}"),
        ("anthropic-api-key", "ANTHROPIC_API_KEY", lambda: f"sk-ant-api03-{s(B64URL, 93)}AA"),
        ("huggingface-token", "HF_TOKEN", lambda: "hf_" + s(LOWER + UPPER, 34)),
        ("replicate-token", "REPLICATE_API_TOKEN", lambda: "r8_" + a(37)),
        ("groq-api-key", "GROQ_API_KEY", lambda: "gsk_" + a(52)),
        ("perplexity-api-key", "PERPLEXITY_API_KEY", lambda: "pplx-" + h(48)),
        ("xai-api-key", "XAI_API_KEY", lambda: "xai-" + a(80)),
        ("openrouter-api-key", "OPENROUTER_API_KEY", lambda: "sk-or-v1-" + h(64)),
        ("langsmith-api-key", "LANGSMITH_API_KEY", lambda: f"lsv2_pt_{h(32)}_{h(10)}"),
        ("tavily-api-key", "TAVILY_API_KEY", lambda: "tvly-" + a(32)),
        ("linear-api-key", "LINEAR_API_KEY", lambda: "lin_api_" + a(40)),
        ("notion-integration-token", "NOTION_TOKEN", lambda: "secret_" + a(43)),
        ("notion-token-v2", "NOTION_TOKEN", lambda: "ntn_" + d(11) + a(35)),
        ("airtable-pat", "AIRTABLE_API_KEY", lambda: f"pat{a(14)}.{h(64)}"),
        ("figma-pat", "FIGMA_TOKEN", lambda: f"figd_{s(B64URL, 40)}"),
        ("asana-pat", "ASANA_ACCESS_TOKEN", lambda: f"2/{d(16)}/{d(16)}:{h(32)}"),
        ("contentful-pat", "CONTENTFUL_MANAGEMENT_TOKEN", lambda: "CFPAT-" + s(B64URL, 43)),
        ("typeform-pat", "TYPEFORM_TOKEN", lambda: f"tfp_{a(44)}_{a(14)}"),
        ("frameio-token", "FRAMEIO_TOKEN", lambda: "fio-u-" + s(B64URL, 64)),
        ("adafruit-io-key", "ADAFRUIT_IO_KEY", lambda: "aio_" + a(28)),
        ("postman-api-key", "POSTMAN_API_KEY", lambda: f"PMAK-{h(24)}-{h(34)}"),
        ("prefect-api-key", "PREFECT_API_KEY", lambda: "pnu_" + a(36)),
        ("readme-api-key", "README_API_KEY", lambda: "rdme_" + h(70)),
        (
            "mapbox-secret-token",
            "MAPBOX_ACCESS_TOKEN",
            lambda: "sk.eyJ1IjoiY29ycCIsImEiOiJ" + a(24) + "In0." + s(B64URL, 22),
        ),
        ("algolia-admin-key", "ALGOLIA_ADMIN_API_KEY", lambda: h(32)),
        (
            "age-secret-key",
            "AGE_SECRET_KEY",
            lambda: "AGE-SECRET-KEY-1" + s("QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L", 58),
        ),
        (
            "1password-service-account",
            "OP_SERVICE_ACCOUNT_TOKEN",
            lambda: (
                "ops_"
                + base64.b64encode(
                    json.dumps(
                        {
                            "signInAddress": "corp.1password.com",
                            "userAuth": {
                                "method": "SRPg-4096",
                                "alg": "PBES2g-HS256",
                                "iterations": 650000,
                                "salt": a(22),
                            },
                            "email": f"{a(12).lower()}@1passwordserviceaccounts.com",
                            "srpX": h(64),
                            "muk": {"alg": "A256GCM", "k": a(43)},
                            "secretKey": f"A3-{a(6).upper()}-{a(6).upper()}",
                        }
                    ).encode()
                )
                .decode()
                .rstrip("=")
            ),
        ),
    ]


def _formats_saas_apis_more(g: Gen) -> list[tuple[str, str, Callable[[], str]]]:
    """SaaS APIs, continued."""
    a, h, d, s = g.alnum, g.hex, g.digits, g.s  # noqa: F841 (not every group uses each)
    return [
        ("facebook-access-token", "FACEBOOK_ACCESS_TOKEN", lambda: "EAAB" + a(180)),
        (
            "twitter-bearer-token",
            "TWITTER_BEARER_TOKEN",
            lambda: "AAAAAAAAAAAAAAAAAAAAA" + a(25) + "%3D" + a(50),
        ),
        ("firebase-fcm-server-key", "FCM_SERVER_KEY", lambda: f"AAAA{s(B64URL, 7)}:APA91b{s(B64URL, 134)}"),
        ("google-oauth-refresh-token", "GOOGLE_REFRESH_TOKEN", lambda: "1//0" + s(B64URL, 99)),
        ("google-oauth-access-token", "GOOGLE_ACCESS_TOKEN", lambda: "ya29.a0" + s(B64URL, 160)),
        ("jwt", "AUTH_TOKEN", g.jwt),
        (
            "kubernetes-sa-token",
            "K8S_TOKEN",
            lambda: g.jwt(
                {
                    "iss": "kubernetes/serviceaccount",
                    "kubernetes.io/serviceaccount/namespace": "prod",
                    "sub": "system:serviceaccount:prod:deployer",
                }
            ),
        ),
    ]


def _formats(g: Gen) -> list[tuple[str, str, Callable[[], str]]]:
    return [
        fmt
        for group in (
            _formats_source_hosting_and_ci,
            _formats_package_registries,
            _formats_cloud_and_infrastructure,
            _formats_payments_and_commerce,
            _formats_messaging_and_e_mail,
            _formats_saas_apis,
            _formats_saas_apis_more,
        )
        for fmt in group(g)
    ]


# Each provider value in these files, in turn: how real code, config and scripts hold a token.
def _contexts(var: str, value: str) -> list[tuple[str, str]]:
    lower = var.lower()
    return [
        ("settings.py", f'{var} = "{value}"\n'),
        ("config.yml", f"app:\n  {lower}: {value}\n"),
        ("deploy.sh", f"#!/bin/sh\nexport {var}='{value}'\n./release.sh\n"),
        ("client.js", f'const client = new Client({{ token: "{value}" }});\n'),
        ("config.json", json.dumps({"service": {lower: value}}, indent=2) + "\n"),
        ("docker-compose.yml", f"services:\n  app:\n    environment:\n      - {var}={value}\n"),
    ]


def _special(g: Gen) -> list[Entry]:
    """Credentials whose shape is the context itself: requests, URIs, paired keys, passwords."""
    return _special_requests(g) + _special_stores(g) + _special_once_missed(g)


def _special_requests(g: Gen) -> list[Entry]:
    """AWS key pairs and credentials in curl command lines."""
    out: list[Entry] = []
    a, h = g.alnum, g.hex
    for i in range(6):
        key_id, secret = "AKIA" + g.s(BASE32, 16), g.s(B64, 40)
        files = [
            ("settings.py", f'AWS_ACCESS_KEY_ID = "{key_id}"\nAWS_SECRET_ACCESS_KEY = "{secret}"\n'),
            ("aws.yml", f"aws:\n  access_key_id: {key_id}\n  secret_access_key: {secret}\n"),
            ("env.sh", f"export AWS_ACCESS_KEY_ID={key_id}\nexport AWS_SECRET_ACCESS_KEY={secret}\n"),
            (
                "s3.py",
                (
                    f's3 = boto3.client("s3", aws_access_key_id="{key_id}",\n'
                    f'                  aws_secret_access_key="{secret}")\n'
                ),
            ),
            (
                "credentials.ini",
                f"[default]\naws_access_key_id = {key_id}\naws_secret_access_key = {secret}\n",
            ),
            ("keys.py", f'KEYS = ("{key_id}", "{secret}")\n'),
        ]
        name, text = files[i]
        out.append(Entry("aws-secret-access-key", name, text, secret))
        out.append(Entry("aws-access-key-id", name, text, key_id))
    for i in range(6):
        token = "ghp_" + a(36)
        user, password = g.s(LOWER, 7), a(12) + "!" + g.s(DIGITS, 3)
        basic = base64.b64encode(f"{user}:{password}".encode()).decode()
        bearer = [g.jwt(), a(40), "sk_live_" + a(32)][i % 3]
        lines = [
            (
                "deploy.sh",
                f"curl -H 'Authorization: Bearer {bearer}' https://api.corp.internal/v1/deploy\n",
                bearer,
            ),
            ("fetch.sh", f'curl -sS -H "Authorization: token {token}" https://api.github.com/user\n', token),
            (
                "backup.sh",
                f"curl -u {user}:{password} https://nexus.corp.internal/repository/raw/\n",
                password,
            ),
            (
                "upload.sh",
                f'curl --user "{user}:{password}" -T build.tgz https://files.corp.internal/\n',
                password,
            ),
            (
                "probe.sh",
                f"curl -H 'Authorization: Basic {basic}' https://grafana.corp.internal/api/health\n",
                basic,
            ),
            ("api.sh", f"curl -X POST -H 'X-API-Key: {h(40)}' https://api.corp.internal/v2/jobs\n", None),
        ]
        name, text, value = lines[i]
        if value is None:
            value = text.split("X-API-Key: ")[1].split("'")[0]
        out.append(Entry("curl-credentials", name, text, value))
    return out


def _special_stores(g: Gen) -> list[Entry]:
    """Passwords assigned in configuration, connection strings, Azure keys, Kubernetes secrets."""
    out: list[Entry] = []
    a = g.alnum
    words = ["Tr0ub4dor&3", "Winter2025!", "p@ssW0rd-prod", "Qm9bd8!kLz", "s3cure#Db-77", "N0rth-Star_42"]
    for i in range(12):
        pw = g.rng.choice(words) + g.s(DIGITS, 3)
        files = [
            ("settings.py", f'PASSWORD = "{pw}"\n'),
            ("settings.py", f"DATABASES = {{'default': {{'USER': 'app', 'PASSWORD': '{pw}'}}}}\n"),
            ("config.yml", f"database:\n  user: app\n  password: {pw}\n"),
            ("docker-compose.yml", f"services:\n  db:\n    environment:\n      POSTGRES_PASSWORD: {pw}\n"),
            ("db.sh", f"export PGPASSWORD='{pw}'\npsql -h db -U app\n"),
            ("application.properties", f"spring.datasource.password={pw}\n"),
            ("Settings.java", f'private static final String DB_PASSWORD = "{pw}";\n'),
            ("config.go", f'var dbPassword = "{pw}"\n'),
            ("mail.py", f'server.login("alerts", "{pw}")\n'),
            ("ldap.yml", f'ldap:\n  bind_dn: cn=svc,dc=corp\n  bind_password: "{pw}"\n'),
            ("main.tf", f'resource "db" "main" {{\n  password = "{pw}"\n}}\n'),
            ("app.js", f"const conn = mysql.createConnection({{ user: 'app', password: '{pw}' }});\n"),
        ]
        name, text = files[i]
        out.append(Entry("password-assignment", name, text, pw))
    for i in range(8):
        user, pw, host = g.s(LOWER, 6), a(14), f"db{i}.corp.internal"
        uris = [
            f'DATABASE_URL = "postgres://{user}:{pw}@{host}:5432/app"\n',
            f'MONGO_URI = "mongodb+srv://{user}:{pw}@{host}/prod?retryWrites=true"\n',
            f'REDIS_URL = "redis://:{pw}@{host}:6379/0"\n',
            f"amqp_url: amqp://{user}:{pw}@{host}:5672/vhost\n",
            f'conn = "Server={host};Database=app;User Id={user};Password={pw};"\n',
            f'jdbc = "jdbc:mysql://{host}:3306/app?user={user}&password={pw}"\n',
            f"git clone https://{user}:{pw}@git.corp.internal/team/app.git\n",
            f'SMTP = "smtps://{user}:{pw}@{host}:465"\n',
        ]
        out.append(Entry("connection-string", ["db.py", "config.yml"][i % 2], uris[i], pw))
    for i in range(3):
        key = g.b64(64)
        texts = [
            (
                f'AZURE_STORAGE = "DefaultEndpointsProtocol=https;AccountName=corpdata;AccountKey={key};'
                f'EndpointSuffix=core.windows.net"\n'
            ),
            (
                f'SERVICE_BUS = "Endpoint=sb://corp.servicebus.windows.net/;SharedAccessKeyName=RootManageSharedAccessKey;'
                f'SharedAccessKey={g.b64(32)}"\n'
            ),
            f'COSMOS = "AccountEndpoint=https://corp.documents.azure.com:443/;AccountKey={key};"\n',
        ]
        value = texts[i].split("AccessKey=" if i == 1 else "AccountKey=")[1].split(";")[0].split('"')[0]
        out.append(Entry("azure-connection-string", "storage.py", texts[i], value))
    for i in range(2):
        data = base64.b64encode(a(24).encode()).decode()
        text = (
            f"apiVersion: v1\nkind: Secret\nmetadata:\n  name: app-secrets\ntype: Opaque\n"
            f"data:\n  api-token: {data}\n"
        )
        out.append(Entry("kubernetes-secret", "secret.yaml" if i else "k8s/app.yml", text, data))
    return out


def _special_once_missed(g: Gen) -> list[Entry]:
    """Kinds an independent corpus once found the scrubber letting through, each in the shapes of
    file it was found in: AWS secret keys beside their key id, Mailgun keys, passwords assigned a
    string literal, Salesforce session ids and refresh tokens, JWTs, Kimi (Moonshot) keys."""
    return _once_missed_aws(g) + _once_missed_tokens(g) + _once_missed_passwords(g)


def _once_missed_aws(g: Gen) -> list[Entry]:
    out: list[Entry] = []
    shapes = [
        (
            "credentials.ini",
            "[profile ci]\naws_access_key_id = {kid}\naws_secret_access_key = {sec}\nregion = eu-west-1\n",
        ),
        ("app.env", "AWS_REGION=us-east-1\nAWS_ACCESS_KEY_ID={kid}\nAWS_SECRET_ACCESS_KEY={sec}\n"),
        (
            "storage.py",
            'session = boto3.Session(\n    aws_access_key_id="{kid}",\n    aws_secret_access_key="{sec}",\n)\n',
        ),
        ("values.yaml", "s3:\n  bucket: backups\n  accessKeyId: {kid}\n  secretAccessKey: {sec}\n"),
        (
            "aws.json",
            '{{\n  "AccessKeyId": "{kid}",\n  "SecretAccessKey": "{sec}",\n  "Region": "eu-central-1"\n}}\n',
        ),
        ("backup.py", "AWS = {{'key': '{kid}', 'secret': '{sec}'}}\n"),
        (
            "s3.js",
            "const s3 = new S3Client({{ credentials: {{ accessKeyId: '{kid}', secretAccessKey: '{sec}' }} }});\n",
        ),
        ("config.yml", "storage:\n  s3:\n    access_key: {kid}\n    secret_key: {sec}\n"),
        # The file IAM's console hands out, and a pair passed by position.
        (
            "ci_accessKeys.csv",
            "Access key ID,Secret access key\n{kid},{sec}\n",
        ),
        ("upload.py", 'client = minio.Minio("s3.amazonaws.com", "{kid}", "{sec}")\n'),
    ]
    for name, shape in shapes:
        kid, sec = "AKIA" + g.s(BASE32, 16), g.s(B64, 40)
        out.append(Entry("aws-secret-beside-key-id", name, shape.format(kid=kid, sec=sec), sec))
    # AWS's documentation secret, copied beside a key id of the account's own: still the pair.
    kid = "AKIA" + g.s(BASE32, 16)
    text = (
        f"[ci]\naws_access_key_id = {kid}\naws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n"
    )
    out.append(
        Entry("aws-secret-beside-key-id", "credentials", text, "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
    )
    return out


def _once_missed_tokens(g: Gen) -> list[Entry]:
    out: list[Entry] = []
    h, sf = g.hex, ALNUM + "._"
    mailgun = [
        ("mail.py", 'mg = Mailgun(domain="mg.corp.internal", key="{k}")\n', "key"),
        ("mailer.js", "const mailgun = require('mailgun-js')({{ apiKey: '{k}', domain: DOMAIN }});\n", "key"),
        ("settings.py", 'ANYMAIL = {{"MAILGUN_API_KEY": "{k}"}}\n', "key"),
        ("send.sh", "curl -s --user 'api:{k}' https://api.mailgun.net/v3/$DOMAIN/messages\n", "new"),
        ("notify.py", 'requests.post(url, auth=("api", "{k}"), data={{"to": to}})\n', "new"),
        (".mailgun.yml", "mailgun:\n  api_key: {k}\n  domain: mg.corp.internal\n", "new"),
        ("webhooks.py", 'MAILGUN_WEBHOOK_SIGNING_KEY = "{k}"\n', "new"),
        ("validate.js", "const validator = new Validator('{k}');\n", "pub"),
    ]
    for name, shape, which in mailgun:
        k = {"key": "key-" + h(32), "new": f"{h(32)}-{h(8)}-{h(8)}", "pub": "pubkey-" + h(32)}[which]
        out.append(Entry("mailgun-key", name, shape.format(k=k), k))
    salesforce = [
        ("sf.py", "sf = Salesforce(instance_url=INSTANCE, session_id='{sid}')\n", "sid"),
        ("Client.java", 'conn.setSessionHeader("{sid}");\n', "sid"),
        ("auth.json", '{{"access_token": "{sid}", "token_type": "Bearer"}}\n', "sid"),
        ("sfdx.env", "SFDX_AUTH_URL=force://PlatformCLI::{rt}@corp.my.salesforce.com\n", "rt"),
        (
            "deploy.yml",
            'env:\n  SF_AUTH_URL: "force://{cid}:{cs}:{rt}@corp--uat.sandbox.my.salesforce.com"\n',
            "rt",
        ),
        ("org.json", '{{"refresh_token": "{rt}", "instance_url": "https://corp.my.salesforce.com"}}\n', "rt"),
        ("connect.py", 'REFRESH = "{rt}"\n', "rt"),
    ]
    for name, shape, which in salesforce:
        sid, rt = f"00D{g.alnum(12)}!AQ{g.s(sf, 94)}", "5Aep861" + g.s(sf, 80)
        text = shape.format(sid=sid, rt=rt, cid="3MVG9" + g.s(sf, 80), cs=h(64).upper())
        out.append(Entry("salesforce-token", name, text, {"sid": sid, "rt": rt}[which]))
    jwts = [
        ("client.py", 'headers = {{"Authorization": f"Bearer {t}"}}\n'),
        ("api.test.js", "const res = await request(app).get('/me').set('Authorization', 'Bearer {t}');\n"),
        ("callback.html", '<a href="/auth/callback?id_token={t}&state=xyz">continue</a>\n'),
        ("session.json", '{{"user": "svc", "token": "{t}"}}\n'),
        ("env.yml", "variables:\n  SERVICE_JWT: {t}\n"),
        ("login_test.go", 'cookie := &http.Cookie{{Name: "jwt", Value: "{t}"}}\n'),
        ("token.txt", "{t}\n"),
    ]
    for i, (name, shape) in enumerate(jwts):
        header = {"alg": "RS256", "typ": "JWT", "kid": g.s(B64URL, 43)} if i % 2 else None
        t = g.jwt(header=header)
        out.append(Entry("jwt-in-context", name, shape.format(t=t), t.rsplit(".", 1)[1]))
    kimi = [
        ("kimi.py", 'client = OpenAI(\n    api_key="{k}",\n    base_url="https://api.moonshot.cn/v1",\n)\n'),
        (
            "chat.js",
            "const client = new OpenAI({{ apiKey: '{k}', baseURL: 'https://api.moonshot.ai/v1' }});\n",
        ),
        ("kimi.env", "MOONSHOT_API_KEY={k}\n"),
        ("llm.yaml", "providers:\n  kimi:\n    base_url: https://api.moonshot.cn/v1\n    key: {k}\n"),
        ("ask.sh", 'curl https://api.moonshot.cn/v1/models -H "Authorization: Bearer {k}"\n'),
        (
            "summarize.py",
            (
                'r = requests.post(\n    "https://api.moonshot.cn/v1/chat/completions",\n'
                '    headers={{"Authorization": "Bearer {k}"}},\n    json=body,\n)\n'
            ),
        ),
    ]
    for name, shape in kimi:
        k = "sk-" + g.alnum(48)
        out.append(Entry("kimi-api-key", name, shape.format(k=k), k))
    return out


def _once_missed_passwords(g: Gen) -> list[Entry]:
    out: list[Entry] = []
    words = ["hunter2Xy!", "Corp-Deploy", "Maple&Syrup", "gr33nTea", "Atlas_Prod", "Zebra#Run"]
    shapes = [
        ("settings.py", 'password = "{p}"\n'),
        ("config.json", '{{"db": {{"user": "app", "password": "{p}"}}}}\n'),
        ("local.env", "DB_USER=app\nPASSWORD={p}\n"),
        ("database.yaml", "postgres:\n  db_password: {p}\n"),
        ("client.py", "client = Client(user='app', password='{p}')\n"),
        ("app.ini", "[database]\nuser = app\npassword = {p}\n"),
        ("config.js", "export default {{ db: {{ password: '{p}' }} }};\n"),
        ("database.php", "'mysql' => ['username' => 'app', 'password' => '{p}'],\n"),
        ("Config.java", 'props.setProperty("password", "{p}");\n'),
        ("my.cnf", "[client]\nuser=app\npassword={p}\n"),
    ]
    for name, shape in shapes:
        p = g.rng.choice(words) + g.s(DIGITS, 2)
        out.append(Entry("password-literal", name, shape.format(p=p), p))
    return out


def look_alikes() -> list[tuple[str, str]]:
    """(filename, text) that name a password, a key or a token but hold none: scrubbing must leave
    them unchanged."""
    return [
        ("settings.py", 'password = os.environ["DB_PASSWORD"]\n'),
        ("settings.py", "password = os.environ.get('DB_PASSWORD')\n"),
        ("settings.py", "password = None\n"),
        ("settings.py", 'password = ""\n'),
        ("settings.py", "password = ''\n"),
        ("login.py", "password = getpass()\n"),
        ("login.py", "password = getpass.getpass('Password: ')\n"),
        ("settings.py", 'password = "password"\n'),
        ("settings.py", 'password = "changeme"\n'),
        ("settings.py", 'password = "your-password-here"\n'),
        ("config.json", '{"password": "<password>"}\n'),
        ("config.json", '{"password": ""}\n'),
        ("config.json", '{"password": null}\n'),
        ("local.env", "PASSWORD=\n"),
        ("local.env", "PASSWORD=${DB_PASSWORD}\n"),
        ("database.yaml", "postgres:\n  db_password: ${DB_PASSWORD}\n"),
        ("database.yaml", "postgres:\n  db_password: '{{ vault_db_password }}'\n"),
        ("database.yaml", "postgres:\n  db_password: null\n"),
        ("config.js", "const password = process.env.PASSWORD;\n"),
        ("models.py", "password = models.CharField(max_length=128)\n"),
        ("forms.py", "password = forms.CharField(widget=forms.PasswordInput)\n"),
        ("auth.py", "password = make_password(raw_password)\n"),
        ("auth.py", "if password == confirm:\n    user.set_password(password)\n"),
        ("token.py", 'jwt = "eyJhbGciOiJIUzI1NiJ9"  # a header alone\n'),
        ("mail.py", 'MAILGUN_DOMAIN = "mg.corp.internal"\n'),
        (
            "aws.py",
            'AWS_ACCESS_KEY_ID = "AKIAIOSFODNN7EXAMPLE"\nAWS_SECRET_ACCESS_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"\n',
        ),
    ]


def _private_keys() -> list[Entry]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    F = serialization.PrivateFormat
    keys = [
        (rsa.generate_private_key(public_exponent=65537, key_size=1024), F.TraditionalOpenSSL),
        (ec.generate_private_key(ec.SECP256R1()), F.PKCS8),
        (ed25519.Ed25519PrivateKey.generate(), F.OpenSSH),
    ]
    out = []
    for i, (key, fmt) in enumerate(keys):
        pem = key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption()).decode()
        body = pem.strip().splitlines()[1]
        if i == 0:
            out.append(Entry("private-key", "deploy.py", f'KEY = """{pem}"""\n', body))
        elif i == 1:
            indented = "\n".join("    " + line for line in pem.strip().splitlines())
            out.append(Entry("private-key", "values.yml", f"tls:\n  key: |\n{indented}\n", body))
        else:
            escaped = pem.replace("\n", "\\n")
            out.append(
                Entry(
                    "private-key",
                    "sa.json",
                    json.dumps({"type": "service_account"})[:-1] + f', "private_key": "{escaped}"}}\n',
                    body,
                )
            )
    return out


def corpus(seed: int = 20261202, contexts_per_format: int = 3) -> list[Entry]:
    """Every provider format in `contexts_per_format` kinds of file, then the special cases."""
    g = Gen(seed)
    out: list[Entry] = []
    for n, (kind, var, make) in enumerate(_formats(g)):
        contexts = _contexts(var, "")
        for k in range(contexts_per_format):
            value = make()
            name, _ = contexts[(n + k) % len(contexts)]
            text = dict(_contexts(var, value))[name]
            out.append(Entry(kind, name, text, value))
    out.extend(_special(g))
    out.extend(_private_keys())
    return out


def provider_kinds() -> list[str]:
    return [kind for kind, _, _ in _formats(Gen(0))]


def examples(kinds: list[str], seed: int = 7) -> dict[str, tuple[str, str]]:
    """One (variable name, value) per provider kind asked for."""
    g = Gen(seed)
    table = {kind: (var, make) for kind, var, make in _formats(g)}
    return {kind: (table[kind][0], table[kind][1]()) for kind in kinds}
