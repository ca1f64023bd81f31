"""The insecure-code response filter: every rule on its own example and near miss, the cut in each
kind and language, what counts as introduced by the suggestion, the corpus's precision and recall,
a second set written after the rules were frozen, the cost, and the filter through the API:
counted in FilterCount and switched off by the admin's policy."""

from __future__ import annotations

import time

import pytest

from benchmarks.insecure_corpus import SAFE, VULNERABLE, Snippet
from inference.filters import response_filter, suggestion_filter
from inference.insecure import RULES, insecure_find


@pytest.mark.parametrize("rule", RULES, ids=[r.id for r in RULES])
def test_every_rule_flags_its_example_and_passes_its_near_miss(rule):
    found = insecure_find(rule.example)
    assert found is not None and rule.id in found.rules, found
    assert insecure_find(rule.near_miss) is None


def test_rule_ids_are_unique_and_documented():
    assert len({r.id for r in RULES}) == len(RULES)
    for rule in RULES:
        assert rule.cwe.startswith("CWE-") and rule.languages and rule.keywords
        assert all(k == k.lower() for k in rule.keywords), rule.id


@pytest.mark.parametrize(
    "suggestion,kept",
    [
        # SQL: the safe first line stays, the formatted query goes
        ('row = None\ncursor.execute(f"SELECT * FROM t WHERE id = {tid}")\n', "row = None\n"),
        # shell: cut before the builder of the command, not only before the call
        ('log("start")\ncmd = "tar xzf " + archive\nos.system(cmd)\n', 'log("start")\n'),
        # eval of input
        ("x = 1\nvalue = eval(request.form['expr'])\n", "x = 1\n"),
        # deserialisation
        ("raw = sock.recv(4096)\nmsg = pickle.loads(raw)\n", "raw = sock.recv(4096)\n"),
        # TLS off
        (
            "s = requests.Session()\ns.verify = False\nr = s.get(url, verify=False)\n",
            "s = requests.Session()\n",
        ),
        # HTML
        ("const el = document.querySelector('#out');\nel.innerHTML = '<b>' + name + '</b>';\n", None),
        # weak password hash
        (
            "salt = os.urandom(16)\ndigest = hashlib.sha1(password.encode()).hexdigest()\n",
            "salt = os.urandom(16)\n",
        ),
        # a classic C bug
        ("char line[80];\ngets(line);\n", "char line[80];\n"),
    ],
)
def test_each_kind_is_cut_before_the_offending_line(suggestion, kept):
    out = response_filter(suggestion)
    assert out.acted == ["insecure"]
    assert out.text == (kept if kept is not None else suggestion.split("\n", 1)[0] + "\n")


def test_a_first_line_that_is_insecure_leaves_nothing():
    out = response_filter('os.system("rm -rf " + path)\nprint("done")\n')
    assert out.text == "" and out.acted == ["insecure"]


def test_a_multi_line_call_is_cut_at_its_first_line():
    suggestion = 'x = 1\ncursor.execute(\n    "SELECT * FROM users WHERE name = \'" + name + "\'"\n)\n'
    assert response_filter(suggestion).text == "x = 1\n"


def test_the_line_the_suggestion_finishes_is_judged_whole():
    # The prefix opened the call; the suggestion brings the formatted SQL: introduced.
    prefix = "def find(name):\n    return db.execute("
    suggestion = "f\"SELECT * FROM users WHERE name = '{name}'\")\n"
    assert insecure_find(suggestion) is None  # alone, no call is in sight
    out = response_filter(suggestion, prefix=prefix)
    assert out.acted == ["insecure"] and out.text == ""
    # The prefix already holds the concatenation: the suggestion only closes the call.
    prefix = 'def find(name):\n    return db.execute("SELECT * FROM users WHERE name = \'" + '
    assert insecure_find('name + "\'")\n', prefix) is None
    # The call was opened on an earlier line of the prefix.
    prefix = "def find(name):\n    return db.execute(\n        "
    assert insecure_find('"SELECT * FROM users WHERE name = \'" + name + "\'"\n    )\n', prefix) is not None


def test_a_variable_built_in_the_prefix_taints_the_suggestions_sink():
    prefix = 'def run(host):\n    cmd = "ping -c 1 " + host\n'
    found = insecure_find("    return os.system(cmd)\n", prefix)
    assert found is not None and found.rules == ("shell-built-variable",) and found.offset == 0
    # Reassigned from a literal in between: no longer built from input.
    prefix += '    cmd = "ping -c 1 localhost"\n'
    assert insecure_find("    return os.system(cmd)\n", prefix) is None


def test_what_the_prefix_already_holds_is_not_the_suggestions_doing():
    prefix = 'os.system(f"ls {path}")\n'
    assert insecure_find('print("listed")\n', prefix) is None
    assert insecure_find("  # never call eval(user_input) here\n") is None  # a comment runs nothing


def test_switching_the_filter_off_lets_the_suggestion_through():
    text = "data = pickle.loads(blob)\n"
    assert response_filter(text).text == ""
    off = frozenset({"email", "url", "ip", "credential"})
    assert response_filter(text, off).text == text
    assert suggestion_filter(text, index=None, enabled=off).acted == []


def _cut_line(snippet: Snippet) -> int | None:
    found = insecure_find(snippet.suggestion, snippet.prefix)
    if found is None:
        return None
    return snippet.suggestion[: found.offset].count("\n")


def test_the_corpus_precision_recall_and_cut_lines():
    assert len(VULNERABLE) >= 60 and len(SAFE) >= 60
    missed = [s.suggestion for s in VULNERABLE if _cut_line(s) is None]
    wrong = [s.suggestion for s in VULNERABLE if _cut_line(s) not in (None, s.line)]
    false = [s.suggestion for s in SAFE if _cut_line(s) is not None]
    assert not false, false
    assert len(missed) <= len(VULNERABLE) // 20, missed  # recall >= 0.95
    assert not wrong, wrong
    languages = {s.language for s in VULNERABLE}
    assert {"python", "javascript", "java", "go", "php", "ruby", "c", "csharp", "shell"} <= languages


# Written after the rules were frozen and not used to change them: other APIs, other phrasings.
UNSEEN_VULNERABLE = [
    'db.engine.execute("SELECT * FROM products WHERE category = \'" + category + "\'")\n',
    "conn.execute(\"UPDATE users SET last_login = now() WHERE username = '{}'\".format(username))\n",
    'sql = f"""SELECT id, name\n    FROM customers WHERE region = \'{region}\'"""\ncur.execute(sql)\n',
    'proc = subprocess.Popen("nslookup " + domain, shell=True, stdout=subprocess.PIPE)\n',
    'info = os.popen("whois %s" % domain).read()\n',
    "data = yaml.load(request.data)\n",
    "obj = pickle.loads(base64.b64decode(token))\n",
    'http = urllib3.PoolManager(cert_reqs="CERT_NONE")\n',
    "resp = httpx.get(url, verify=False)\n",
    'return Markup("<em>%s</em>" % comment)\n',
    "pw_hash = hashlib.sha1(pwd.encode('utf-8')).hexdigest()\n",
    'pool.query("DELETE FROM todos WHERE id = " + req.params.id);\n',
    "const users = await sequelize.query(`SELECT * FROM users WHERE email = '${email}'`);\n",
    "const { stdout } = await execAsync(`ffmpeg -i ${input} ${output}`);\n",
    "cp.exec('unzip ' + file, (err) => done(err));\n",
    'output.innerHTML += "<tr><td>" + row.name + "</td></tr>";\n',
    "document.body.insertAdjacentHTML('beforeend', `<div>${msg}</div>`);\n",
    "process.env.NODE_TLS_REJECT_UNAUTHORIZED = '0';\n",
    'const data = eval("(" + response + ")");\n',
    (
        'String query = "SELECT * FROM accounts WHERE owner = \'" + owner + "\'";\n'
        "ResultSet rs = connection.createStatement().executeQuery(query);\n"
    ),
    'Runtime.getRuntime().exec("cmd /c dir " + folder);\n',
    "Object o = new ObjectInputStream(request.getInputStream()).readObject();\n",
    'byte[] d = MessageDigest.getInstance("MD5").digest(password.getBytes());\n',
    'db.Exec("DELETE FROM users WHERE id = " + id)\n',
    'cmd := exec.Command("bash", "-c", fmt.Sprintf("ping -c 3 %s", host))\n',
    "h := sha1.Sum([]byte(password))\n",
    "$db->query(\"DELETE FROM posts WHERE id = \" . $_POST['id']);\n",
    'system("ping -c 4 " . $host);\n',
    "$data = unserialize(base64_decode($_GET['d']));\n",
    'print "<h1>" . $_REQUEST[\'title\'] . "</h1>";\n',
    "Post.find_by_sql(\"SELECT * FROM posts WHERE author = '#{params[:author]}'\")\n",
    "%x(git checkout #{branch})\n",
    "http.verify_mode = OpenSSL::SSL::VERIFY_NONE\n",
    "config = YAML.unsafe_load(File.read(path))\n",
    'cmd.CommandText = "SELECT * FROM Orders WHERE CustomerId = \'" + customerId + "\'";\n',
    "var order = (Order)new NetDataContractSerializer().Deserialize(stream);\n",
    "handler.ServerCertificateCustomValidationCallback = HttpClientHandler.DangerousAcceptAnyServerCertificateValidator;\n",
    "strcpy(buf, argv[1]);\n",
    'snprintf(cmd, sizeof(cmd), "ping %s", host);\nFILE *p = popen(cmd, "r");\n',
    'system(("convert " + filename + " out.png").c_str());\n',
    "wget --no-check-certificate https://$MIRROR/pkg.tgz\n",
    "git config --global http.sslVerify false\n",
    "val cursor = db.rawQuery(\"SELECT * FROM notes WHERE title = '$title'\", null)\n",
    "let client = reqwest::Client::builder().danger_accept_invalid_certs(true).build()?;\n",
]
UNSEEN_SAFE = [
    'db.engine.execute(text("SELECT * FROM products WHERE category = :c"), c=category)\n',
    'conn.execute("UPDATE users SET last_login = now() WHERE username = ?", (username,))\n',
    'proc = subprocess.Popen(["nslookup", domain], stdout=subprocess.PIPE)\n',
    "data = yaml.safe_load(request.data)\n",
    "obj = json.loads(base64.b64decode(token))\n",
    "resp = httpx.get(url, verify=ssl_context)\n",
    'return Markup("<em>%s</em>") % comment\n',
    "pw_hash = bcrypt.hashpw(pwd.encode('utf-8'), bcrypt.gensalt())\n",
    "etag = hashlib.sha1(body).hexdigest()\n",
    'print(f"Running query: SELECT * FROM {table_name}")\n',
    "os.makedirs(path, exist_ok=True)\n",
    'pool.query("DELETE FROM todos WHERE id = $1", [req.params.id]);\n',
    "const { stdout } = await execFileAsync('ffmpeg', ['-i', input, output]);\n",
    "output.append(Object.assign(document.createElement('td'), { textContent: row.name }));\n",
    "const re = new RegExp(pattern);\nconst m = re.exec(line);\n",
    "const total = items.reduce((sum, i) => sum + i.price, 0);\n",
    "const data = JSON.parse(response);\n",
    (
        'PreparedStatement ps = connection.prepareStatement("SELECT * FROM accounts WHERE owner = ?");\n'
        "ps.setString(1, owner);\n"
    ),
    'new ProcessBuilder("cmd", "/c", "dir").directory(folder).start();\n',
    'logger.info("Query for owner " + owner);\n',
    'db.Exec("DELETE FROM users WHERE id = ?", id)\n',
    "h := sha256.Sum256([]byte(password))\n",
    'log.Printf("deleting user %s", id)\n',
    "$stmt = $db->prepare(\"DELETE FROM posts WHERE id = ?\");\n$stmt->execute([$_POST['id']]);\n",
    "echo htmlentities($_REQUEST['title']);\n",
    "$hash = password_hash($password, PASSWORD_ARGON2ID);\n",
    "Post.where(author: params[:author])\n",
    'system("git", "checkout", branch)\n',
    "http.verify_mode = OpenSSL::SSL::VERIFY_PEER\n",
    "config = YAML.safe_load(File.read(path))\n",
    'cmd.Parameters.AddWithValue("@id", customerId);\n',
    "var html = HtmlEncoder.Default.Encode(comment);\n",
    "strncpy(buf, argv[1], sizeof(buf) - 1);\n",
    "wget -q https://$MIRROR/pkg.tgz\n",
    'eval "$(direnv hook bash)"\n',
    "let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build()?;\n",
    'val cursor = db.rawQuery("SELECT * FROM notes WHERE title = ?", arrayOf(title))\n',
]


def test_the_unseen_set_precision_and_recall():
    """Measured, not tuned: when the rules were frozen, 39 of 44 found (recall 0.89) and none of the
    37 near misses flagged (precision 1.0). The five missed: a triple-quoted f-string over two lines,
    a promisified exec (execAsync), C#'s CommandText assigned a concatenation, strcpy (no rule) and
    Android's rawQuery."""
    found = [s for s in UNSEEN_VULNERABLE if insecure_find(s)]
    false = [s for s in UNSEEN_SAFE if insecure_find(s)]
    recall = len(found) / len(UNSEEN_VULNERABLE)
    precision = len(found) / max(1, len(found) + len(false))
    assert recall >= 0.85, [s for s in UNSEEN_VULNERABLE if s not in found]
    assert precision >= 0.95, false


def test_a_suggestion_costs_well_under_a_millisecond():
    from pathlib import Path

    import django

    root = Path(django.__file__).resolve().parent
    code = (root / "db/models/query.py").read_text().split("\n")
    pairs = [
        ("\n".join(code[i - 40 : i]) + "\n", "\n".join(code[i : i + 6]) + "\n") for i in range(40, 1240, 12)
    ]
    pairs += [(s.prefix, s.suggestion) for s in VULNERABLE + SAFE]
    costs = []
    for prefix, suggestion in pairs:
        started = time.perf_counter()
        insecure_find(suggestion, prefix)
        costs.append(time.perf_counter() - started)
    costs.sort()
    assert costs[len(costs) // 2] * 1000 < 1.0, costs[len(costs) // 2]


# ---------------------------------------------------------------- through the API


def _engine_answering(monkeypatch, text: str) -> None:
    from inference.api import serving
    from inference.engine.result import EngineChoice, EngineResult, Timings

    def fake_complete(params, timeout=120.0):
        timings = Timings(prompt_n=3, prompt_ms=1, predicted_n=9, predicted_ms=1)
        choice = EngineChoice(0, text, "stop", prompt_tokens=3, completion_tokens=9, timings=timings)
        return EngineResult(choices=(choice,), model="m")

    monkeypatch.setattr(serving, "engine_complete", fake_complete)


def _complete(client, token: str, prompt: str = "def load(blob):\n") -> dict:
    r = client.post(
        "/v1/completions",
        {"prompt": prompt},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )
    assert r.status_code == 200, r.content
    return r.json()["choices"][0]


@pytest.mark.django_db
def test_the_api_cuts_an_insecure_suggestion_and_counts_it(client, monkeypatch, settings):
    from inference.auth import token_create
    from inference.models import FilterCount
    from inference.policy import serving_rules_clear

    settings.HEARTH_DEFERRED_WRITES = False
    serving_rules_clear()
    token = token_create(username="dev")[1]
    _engine_answering(monkeypatch, "    data = base64.b64decode(blob)\n    return pickle.loads(data)\n")
    choice = _complete(client, token)
    assert choice["text"] == "    data = base64.b64decode(blob)\n"
    assert choice["finish_reason"] == "content_filter"
    assert FilterCount.objects.get(name="insecure").count == 1


@pytest.mark.django_db
def test_the_api_judges_the_line_the_suggestion_finishes_with_the_prompt(client, monkeypatch, settings):
    from inference.auth import token_create
    from inference.policy import serving_rules_clear

    settings.HEARTH_DEFERRED_WRITES = False
    serving_rules_clear()
    token = token_create(username="dev")[1]
    _engine_answering(monkeypatch, '"SELECT * FROM users WHERE name = \'" + name + "\'")\n')
    choice = _complete(client, token, prompt="def find(name):\n    return db.execute(")
    assert choice["text"] == "" and choice["finish_reason"] == "content_filter"


@pytest.mark.django_db
def test_the_policy_switches_the_filter_off(client, monkeypatch, settings):
    from inference.auth import token_create
    from inference.models import FilterCount
    from inference.policy import policy_get, serving_rules_clear

    settings.HEARTH_DEFERRED_WRITES = False
    token = token_create(username="dev")[1]
    suggestion = "    return pickle.loads(blob)\n"
    _engine_answering(monkeypatch, suggestion)
    policy = policy_get()
    assert "insecure" in policy.response_filters  # on by default
    policy.response_filters = ["email", "url", "ip", "credential"]
    policy.save()
    serving_rules_clear()
    choice = _complete(client, token)
    assert choice["text"] == suggestion and choice["finish_reason"] == "stop"
    assert not FilterCount.objects.filter(name="insecure").exists()


@pytest.mark.django_db
def test_the_policies_page_lists_the_switch_with_its_help(admin_client):
    html = admin_client.get("/admin/inference/servingpolicy/policies/").content.decode()
    assert 'value="insecure"' in html and "introduces an obvious vulnerability" in html


@pytest.mark.django_db
def test_the_migration_switches_it_on_in_existing_policies_unless_all_were_off():
    import importlib

    from django.apps import apps

    from inference.models import ServingPolicy

    migration = importlib.import_module("inference.migrations.0007_serving_insecure_filter")
    ServingPolicy.objects.create(pk=1, response_filters=["email", "credential"])
    ServingPolicy.objects.create(pk=2, response_filters=[])
    migration.insecure_on(apps, None)
    assert ServingPolicy.objects.get(pk=1).response_filters == ["email", "credential", "insecure"]
    assert ServingPolicy.objects.get(pk=2).response_filters == []
    migration.insecure_off(apps, None)
    assert ServingPolicy.objects.get(pk=1).response_filters == ["email", "credential"]
