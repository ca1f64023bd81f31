"""The insecure-code rule table: one row per construct, with its CWE, the languages it targets, a
line it must flag and a near miss it must leave alone (tests run both for every row).

A rule's pattern finds the sink; its check (when it has one) decides from the call's arguments
whether what reaches the sink was built from strings; its `unless` is a mitigation in sight on the
same line (a quoting or escaping call, a safe loader) that clears it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from inference.insecure.code import (
    Scope,
    call_args,
    formatted,
    literal,
)


@dataclass(frozen=True)
class Rule:
    id: str
    cwe: str
    languages: str
    pattern: re.Pattern[str]
    keywords: tuple[str, ...]  # lowercase: a line holding none of them is not searched
    example: str  # a suggestion this rule must flag
    near_miss: str  # a suggestion close to it that must pass
    check: Callable[[str, re.Match, Scope], bool] | None = None  # (joined line, match, scope)
    unless: re.Pattern[str] | None = None  # on the joined line: a mitigation in sight
    in_strings: bool = False  # may match inside a string literal (else only in code, never in prose)


def _c(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


_SQL_FRAGMENT_CALLS = {
    "where",
    "order",
    "having",
    "joins",
    "extra",
    "whereRaw",
    "orWhereRaw",
    "havingRaw",
    "orderByRaw",
    "selectRaw",
    "joinRaw",
    "find_by_sql",
}
_SQL_CALL = _c(
    r"(?:(?<=[.>:])|\b(?:new\s+)?)(?P<fn>execute|executemany|executescript|execute_sql|exec_driver_sql"
    r"|raw|query|queryRaw|\$queryRawUnsafe|\$executeRawUnsafe|exec|Exec|ExecContext|Query|QueryContext"
    r"|QueryRow|QueryRowContext|Raw|executeQuery|executeUpdate|executeLargeUpdate|prepareStatement"
    r"|prepare|createQuery|createNativeQuery|createSQLQuery|addBatch|queryForObject|queryForList"
    r"|queryForMap|queryForRowSet|update|batchUpdate|find_by_sql|where|order|having|joins|extra"
    r"|select_all|select_value|select_one|select_rows|exec_query|mysql_query|mysqli_query|mysqli_multi_query"
    r"|mysql_real_query|pg_query|pg_send_query|sqlite_query|sqlite3_exec|sqlite3_prepare(?:_v2)?|PQexec"
    r"|FromSqlRaw|ExecuteSqlRaw|ExecuteSqlRawAsync|SqlQuery|ExecuteSqlCommand|SqlCommand|OleDbCommand"
    r"|OdbcCommand|MySqlCommand|NpgsqlCommand|SQLiteCommand|SqliteCommand|text|whereRaw|orWhereRaw"
    r"|havingRaw|orderByRaw|selectRaw|joinRaw)\s*\("
)
_SQL_SAFE = _c(
    r"(?i)\b(?:int|intval|parseInt|Number|Integer\.parseInt|Long\.parseLong|atoi|strconv\.Itoa|float)\s*\("
    r"|\(int\)|real_escape_string|escape_string|->quote\(|\bPQescape|quote_ident|sql\.Identifier"
    r"|sanitize_sql|\bquote\(|sqlite3_mprintf|quote_name\(|\bqn\("
)


def _sql_formatted(line: str, m: re.Match, scope: Scope) -> bool:
    args = line[m.end() :]
    return formatted(args, sql=m["fn"] not in _SQL_FRAGMENT_CALLS)


def _sql_tainted(line: str, m: re.Match, scope: Scope) -> bool:
    return any(scope.built("sql", a) is not None for a in call_args(line[m.end() :], 2))


_SHELL_CALL = _c(
    r"(?:\bos\.(?:system|popen|popen2|popen3)|\b(?:subprocess|commands)\.(?:getoutput|getstatusoutput)"
    r"|(?<![\w.>:$])(?:system|popen|_popen|shell_exec|passthru|proc_open|pcntl_exec|wsystem)"
    r"|\bIO\.popen|\bOpen3\.(?:capture2e?|capture3|popen2e?|popen3|pipeline\w*)|\bKernel\.(?:system|exec|spawn)"
    r"|(?:\b|\.)(?:exec|execSync)|\basyncio\.create_subprocess_shell|\bchild_process\.execSync)\s*\("
)
_SHELL_SAFE = _c(
    r"\bshlex\.(?:quote|join)\(|\bpipes\.quote\(|\bescapeshell(?:arg|cmd)\(|\bShellwords\.(?:escape|join)"
    r"|\.shellescape\b|\bshell-quote\b|\bshellEscape\("
)


# `.exec(` on a regular expression (JavaScript's RegExp.prototype.exec) runs no command.
_REGEX_RECEIVER = _c(
    r"(?:/[dgimsuyv]*|\b(?:re|regex|regexp|pattern|rx|\w+(?:Re|RE|Regex|RegExp|Pattern|_re|_regex|_pattern)))$"
)


def _shell_formatted(line: str, m: re.Match, scope: Scope) -> bool:
    if m.group().startswith(".") and _REGEX_RECEIVER.search(line[: m.start()]):
        return False
    args = call_args(line[m.end() :], 1)
    return bool(args) and formatted(args[0])


def _shell_tainted(line: str, m: re.Match, scope: Scope) -> bool:
    if m.group().startswith(".") and _REGEX_RECEIVER.search(line[: m.start()]):
        return False
    args = call_args(line[m.end() :], 1)
    return bool(args) and scope.built("fmt", args[0]) is not None


_SUBPROCESS = _c(r"\b(?:subprocess\.(?:run|call|check_call|check_output|Popen)|spawn|spawnSync)\s*\(")
_SHELL_TRUE = _c(r"\bshell\s*[=:]\s*(?:True|true)\b")


def _subprocess_shell(line: str, m: re.Match, scope: Scope) -> bool:
    if not _SHELL_TRUE.search(line):
        return False
    args = call_args(line[m.end() :], 1)
    return bool(args) and (formatted(args[0]) or scope.built("fmt", args[0]) is not None)


_SHELL_VIA = _c(
    r"\b(?:exec\.Command(?:Context)?|ProcessBuilder|Process\.Start|ProcessStartInfo|Runtime\.getRuntime\(\)\.exec)"
    r"\s*\("
)
_SHELL_WORD = _c(
    r"""["'](?:/bin/|/usr/bin/)?(?:ba|z|da|k)?sh["']|["'](?:cmd(?:\.exe)?|powershell(?:\.exe)?|pwsh)["']"""
    r"""|["'](?:-c|/c|/C|-Command)["']|["'](?:/c|/C|-c) """
)


def _shell_via(line: str, m: re.Match, scope: Scope) -> bool:
    rest = line[m.end() :]
    if not _SHELL_WORD.search(rest):
        return False
    args = call_args(rest, 6)
    return any(formatted(a) or scope.built("fmt", a) is not None for a in args)


def _first_not_literal(line: str, m: re.Match, scope: Scope) -> bool:
    args = call_args(line[m.end() :], 1)
    return bool(args) and not literal(args[0])


def _any_not_literal(line: str, m: re.Match, scope: Scope) -> bool:
    args = call_args(line[m.end() :], 8)
    return bool(args) and not all(literal(a) for a in args)


def _first_formatted(line: str, m: re.Match, scope: Scope) -> bool:
    args = call_args(line[m.end() :], 1)
    return bool(args) and formatted(args[0])


def _first_html_formatted(line: str, m: re.Match, scope: Scope) -> bool:
    """HTML built by splicing values in (joining pieces that are already markup does not count)."""
    args = call_args(line[m.end() :], 1)
    return bool(args) and formatted(args[0], joins=False)


def _has_argument(line: str, m: re.Match, scope: Scope) -> bool:
    args = call_args(line[m.end() :], 1)
    return bool(args) and bool(args[0].strip())


_UNTRUSTED = _c(
    r"\blocation\.|\.value\b|\bparams\b|\bquery\b|\breq\.|\brequest\.|searchParams|\.hash\b|\bevent\.data"
    r"|\be\.data\b|\bmessage\.data|\buserInput|\buser_input|\.getParameter\("
)


def _rhs_html(line: str, m: re.Match, scope: Scope) -> bool:
    rhs = line[m.end() :].rstrip().rstrip(";")
    return formatted(rhs, joins=False) or bool(_UNTRUSTED.search(rhs)) or scope.built("fmt", rhs) is not None


def _html_arg(line: str, m: re.Match, scope: Scope) -> bool:
    args = call_args(line[m.end() :], 2)
    arg = args[-1] if args else ""
    return formatted(arg, joins=False) or bool(_UNTRUSTED.search(arg)) or scope.built("fmt", arg) is not None


def _html_concat(line: str, m: re.Match, scope: Scope) -> bool:
    args = call_args(line[m.end() :], 1)
    return bool(args) and formatted(args[0], joins=False) and "<" in args[0]


def _before_formatted(line: str, m: re.Match, scope: Scope) -> bool:
    return formatted(line[: m.start()], joins=False)


def _dangerously(line: str, m: re.Match, scope: Scope) -> bool:
    return not literal(m["v"])


def _backticks(line: str, m: re.Match, scope: Scope) -> bool:
    body = m["body"]
    if "#{" in body:  # Ruby
        return True
    return "${" not in body and bool(re.search(r"\$[A-Za-z_]", body)) and bool(m["php"])


def _shell_eval(line: str, m: re.Match, scope: Scope) -> bool:
    return bool(re.search(r"\$(?!\()[{A-Za-z_]", m["arg"]))


_JS_LINE = _c(r"\b(?:const|let|var|await)\s|;\s*$|\breadFileSync\b")


def _yaml_unsafe(line: str, m: re.Match, scope: Scope) -> bool:
    """PyYAML's load with a loader other than Safe/Base; without one, only in Python (PyYAML < 6
    then used an unsafe loader; js-yaml 4's load is safe, its 3's was not)."""
    if not _has_argument(line, m, scope):
        return False
    return "Loader" in line or not _JS_LINE.search(line)


_PASSWORD = _c(r"(?i)(?<![a-z])(?:pass(?:word|wd|phrase)?|pwd)(?![a-z])")


def _password_near(line: str, m: re.Match, scope: Scope) -> bool:
    return bool(_PASSWORD.search(line))


# The call names a shell-command rule looks for before it runs its pattern.
_SHELL_KEYWORDS = (
    "system",
    "popen",
    "shell_exec",
    "passthru",
    "proc_open",
    "exec",
    "open3",
    "kernel.",
    "subprocess",
)

RULES: tuple[Rule, ...] = (
    # ---- SQL injection (CWE-89)
    Rule(
        "sql-formatted",
        "CWE-89",
        "Python, JS/TS, Java, Go, PHP, Ruby, C#, C/C++",
        _SQL_CALL,
        keywords=(
            "exec",
            "raw",
            "query",
            "prepare",
            "batch",
            "update",
            "where",
            "order",
            "having",
            "joins",
            "extra",
            "select",
            "command",
            "text",
        ),
        example="cursor.execute(f\"SELECT * FROM users WHERE name = '{name}'\")",
        near_miss='cursor.execute("SELECT * FROM users WHERE name = %s", (name,))',
        check=_sql_formatted,
        unless=_SQL_SAFE,
    ),
    Rule(
        "sql-built-variable",
        "CWE-89",
        "Python, JS/TS, Java, Go, PHP, Ruby, C#, C/C++",
        _SQL_CALL,
        keywords=("exec", "raw", "query", "prepare", "batch", "update", "select", "command", "text"),
        example='query = "SELECT * FROM users WHERE id = " + uid\ncursor.execute(query)',
        near_miss='query = "SELECT * FROM users WHERE id = %s"\ncursor.execute(query, (uid,))',
        check=_sql_tainted,
        unless=_SQL_SAFE,
    ),
    # ---- OS command injection (CWE-78)
    Rule(
        "shell-formatted",
        "CWE-78",
        "Python, JS/TS, PHP, Ruby, Java, C/C++",
        _SHELL_CALL,
        keywords=_SHELL_KEYWORDS,
        example='os.system(f"tar czf {name}.tgz {path}")',
        near_miss='os.system("make clean")',
        check=_shell_formatted,
        unless=_SHELL_SAFE,
    ),
    Rule(
        "shell-built-variable",
        "CWE-78",
        "Python, JS/TS, PHP, Ruby, Java, C/C++",
        _SHELL_CALL,
        keywords=_SHELL_KEYWORDS,
        example='cmd = "ping -c 1 " + host\nos.system(cmd)',
        near_miss='cmd = "ping -c 1 localhost"\nos.system(cmd)',
        check=_shell_tainted,
        unless=_SHELL_SAFE,
    ),
    Rule(
        "shell-true",
        "CWE-78",
        "Python, Node",
        _SUBPROCESS,
        keywords=("subprocess", "spawn"),
        example='subprocess.run(f"grep {pattern} {path}", shell=True)',
        near_miss='subprocess.run(["grep", pattern, path])',
        check=_subprocess_shell,
        unless=_SHELL_SAFE,
    ),
    Rule(
        "shell-via-interpreter",
        "CWE-78",
        "Go, Java, C#",
        _SHELL_VIA,
        keywords=("exec.command", "processbuilder", "process.start", "processstartinfo", "runtime"),
        example='cmd := exec.Command("sh", "-c", "ls "+dir)',
        near_miss='cmd := exec.Command("ls", dir)',
        check=_shell_via,
        unless=_SHELL_SAFE,
    ),
    Rule(
        "shell-backticks",
        "CWE-78",
        "PHP, Ruby, Perl",
        _c(r"(?P<php>\$\w+\s*=\s*|\becho\s+)?`(?P<body>[^`]*)`|%x[({\[](?P<xbody>.*)"),
        keywords=("`", "%x"),
        example="$out = `ls -l $dir`;",
        near_miss="const label = `${count} files`;",
        check=lambda line, m, t: (
            _backticks(line, m, t) if m["body"] is not None else "#{" in (m["xbody"] or "")
        ),
        unless=_SHELL_SAFE,
    ),
    Rule(
        "shell-eval",
        "CWE-78",
        "shell",
        _c(r"(?:^|[;&|]\s*)eval\s+(?P<arg>.+)"),
        keywords=("eval",),
        example='eval "$cmd"',
        near_miss='eval "$(ssh-agent -s)"',
        check=_shell_eval,
    ),
    # ---- code injection (CWE-95)
    Rule(
        "eval-non-literal",
        "CWE-95",
        "Python, JS/TS, PHP, Ruby",
        _c(
            r"(?:(?<![\w.$>:])(?<!def )(?<!function )(?:eval|exec)|\.(?:instance_eval|class_eval|module_eval))"
            r"\s*\((?=\s*[^)\s])"
        ),
        keywords=("eval", "exec"),
        example="result = eval(request.args['expr'])",
        near_miss="value = ast.literal_eval(text)",
        check=_first_not_literal,
    ),
    Rule(
        "new-function",
        "CWE-95",
        "JS/TS",
        _c(r"\bnew\s+Function\s*\("),
        keywords=("function",),
        example="const f = new Function('x', body);",
        near_miss="const f = new Function('a', 'b', 'return a + b');",
        check=_any_not_literal,
    ),
    Rule(
        "string-timer",
        "CWE-95",
        "JS/TS",
        _c(r"\b(?:setTimeout|setInterval)\s*\("),
        keywords=("settimeout", "setinterval"),
        example='setTimeout("update(\'" + id + "\')", 100);',
        near_miss="setTimeout(() => update(id), 100);",
        check=_first_formatted,
    ),
    Rule(
        "preg-replace-e",
        "CWE-95",
        "PHP",
        _c(r"""\bpreg_replace\s*\(\s*(['"])([^\w\s\\]).*?\2[imsxuADSUXJ]*e[imsxuADSUXJ]*\1"""),
        keywords=("preg_replace",),
        example="$s = preg_replace('/(.*)/e', 'strtoupper(\"\\1\")', $input);",
        near_miss="$s = preg_replace('/(.*)/i', '$1', $input);",
    ),
    # ---- deserialisation of untrusted data (CWE-502)
    Rule(
        "pickle-loads",
        "CWE-502",
        "Python",
        _c(
            r"\b(?:c?[Pp]ickle|dill|cloudpickle|marshal|_pickle)\.loads\s*\((?!\s*\w+\.dumps\()|\bjsonpickle\.decode\s*\("
        ),
        keywords=("pickle", "dill", "marshal.loads"),
        example="obj = pickle.loads(request.data)",
        near_miss="obj = json.loads(request.data)",
        check=_has_argument,
    ),
    Rule(
        "yaml-load",
        "CWE-502",
        "Python, JS (js-yaml 3)",
        _c(r"\byaml\.(?:load|load_all)\s*\("),
        keywords=("yaml.load",),
        example="config = yaml.load(f, Loader=yaml.Loader)",
        near_miss="config = yaml.load(f, Loader=yaml.SafeLoader)",
        check=_yaml_unsafe,
        unless=_c(r"\b(?:C?SafeLoader|BaseLoader)\b"),
    ),
    Rule(
        "yaml-unsafe-load",
        "CWE-502",
        "Python, Ruby",
        _c(r"\b(?:yaml|YAML|Psych)\.unsafe_load(?:_file|_all)?\s*\("),
        keywords=("unsafe_load",),
        example="config = yaml.unsafe_load(text)",
        near_miss="config = yaml.safe_load(text)",
    ),
    Rule(
        "marshal-load",
        "CWE-502",
        "Ruby",
        _c(r"\bMarshal\.(?:load|restore)\s*\("),
        keywords=("marshal.",),
        example="session = Marshal.load(Base64.decode64(cookies[:s]))",
        near_miss="session = JSON.parse(Base64.decode64(cookies[:s]))",
    ),
    Rule(
        "unserialize",
        "CWE-502",
        "PHP, Node (node-serialize)",
        _c(r"(?<![\w>:$])unserialize\s*\("),
        keywords=("unserialize",),
        example="$prefs = unserialize($_COOKIE['prefs']);",
        near_miss="$prefs = json_decode($_COOKIE['prefs'], true);",
        check=_first_not_literal,
        unless=_c(r"""allowed_classes['"]?\s*=>\s*false"""),
    ),
    Rule(
        "java-deserialization",
        "CWE-502",
        "Java, Kotlin",
        _c(
            r"\.readObject\s*\(\s*\)|\.readUnshared\s*\(\s*\)|\bnew\s+XMLDecoder\s*\("
            r"|\b(?:enableDefaultTyping|activateDefaultTyping)\s*\("
        ),
        keywords=("readobject", "readunshared", "xmldecoder", "defaulttyping"),
        example="User user = (User) in.readObject();",
        near_miss="User user = mapper.readValue(body, User.class);",
    ),
    Rule(
        "dotnet-deserialization",
        "CWE-502",
        "C#",
        _c(
            r"\b(?:BinaryFormatter|NetDataContractSerializer|SoapFormatter|LosFormatter|ObjectStateFormatter)\s*\("
            r"|TypeNameHandling\s*=\s*TypeNameHandling\.(?:All|Objects|Arrays|Auto)\b"
            r"|\bJavaScriptSerializer\s*\(\s*new\s+SimpleTypeResolver"
        ),
        keywords=("formatter", "netdatacontractserializer", "typenamehandling", "simpletyperesolver"),
        example="var formatter = new BinaryFormatter();",
        near_miss="var user = JsonSerializer.Deserialize<User>(json);",
    ),
    # ---- TLS certificate or host verification off (CWE-295)
    Rule(
        "tls-verify-false",
        "CWE-295",
        "Python",
        _c(r"\bverify(?:_ssl)?\s*=\s*False\b"),
        keywords=("verify",),
        example="r = requests.get(url, verify=False)",
        near_miss="r = requests.get(url, verify=True, timeout=5)",
        unless=_c(r"^\s*(?:async\s+)?def\s"),
    ),
    Rule(
        "tls-python-ssl",
        "CWE-295",
        "Python, C (OpenSSL), Ruby",
        _c(
            r"\bssl\._create_unverified_context\b|\bcheck_hostname\s*=\s*False\b|\bCERT_NONE\b"
            r"|\b(?:SSL_)?VERIFY_NONE\b"
        ),
        keywords=("_create_unverified_context", "check_hostname", "cert_none", "verify_none"),
        example="ctx = ssl._create_unverified_context()",
        near_miss="ctx = ssl.create_default_context()",
        in_strings=True,
    ),
    Rule(
        "tls-node",
        "CWE-295",
        "JS/TS",
        _c(
            r"\brejectUnauthorized\s*:\s*false\b|\bNODE_TLS_REJECT_UNAUTHORIZED\b\W+0\b|\bstrictSSL\s*:\s*false\b"
        ),
        keywords=("rejectunauthorized", "node_tls_reject_unauthorized", "strictssl"),
        example="const agent = new https.Agent({ rejectUnauthorized: false });",
        near_miss="const agent = new https.Agent({ rejectUnauthorized: true });",
        in_strings=True,
    ),
    Rule(
        "tls-go",
        "CWE-295",
        "Go",
        _c(r"\bInsecureSkipVerify\s*:\s*true\b"),
        keywords=("insecureskipverify",),
        example="tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}",
        near_miss="tr := &http.Transport{TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS12}}",
    ),
    Rule(
        "tls-curl-php",
        "CWE-295",
        "PHP, C/C++ (libcurl)",
        _c(
            r"\bCURLOPT_SSL_VERIFY(?:PEER|HOST)\b\s*,\s*(?:false|FALSE|0L?)\b"
            r"""|['"]verify(?:_peer(?:_name)?)?['"]\s*=>\s*false\b"""
        ),
        keywords=("curlopt_ssl_verify", "verify"),
        example="curl_setopt($ch, CURLOPT_SSL_VERIFYPEER, false);",
        near_miss="curl_setopt($ch, CURLOPT_SSL_VERIFYPEER, true);",
        in_strings=True,
    ),
    Rule(
        "tls-java",
        "CWE-295",
        "Java, Kotlin",
        _c(
            r"\bNoopHostnameVerifier\b|\bALLOW_ALL_HOSTNAME_VERIFIER\b|\bAllowAllHostnameVerifier\b"
            r"|\bTrustAllStrategy\b|\bTrustSelfSignedStrategy\b"
            r"|[Hh]ostnameVerifier\s*[({]\s*\(?\s*\w*\s*,\s*\w*\s*\)?\s*->\s*true\b"
            r"|\bcheckServerTrusted\s*\([^)]*\)\s*(?:throws\s+[\w.]+\s*)?\{\s*\}"
        ),
        keywords=("hostnameverifier", "trustallstrategy", "trustselfsignedstrategy", "checkservertrusted"),
        example="conn.setHostnameVerifier((hostname, session) -> true);",
        near_miss="conn.setHostnameVerifier(HttpsURLConnection.getDefaultHostnameVerifier());",
    ),
    Rule(
        "tls-dotnet",
        "CWE-295",
        "C#",
        _c(
            r"\bDangerousAcceptAnyServerCertificateValidator\b"
            r"|ServerCertificate(?:Custom)?ValidationCallback\s*\+?=\s*(?:.*=>\s*true\b|delegate\b.*return\s+true\b)"
        ),
        keywords=("dangerousacceptany", "validationcallback"),
        example="handler.ServerCertificateCustomValidationCallback = (m, c, ch, e) => true;",
        near_miss="handler.ServerCertificateCustomValidationCallback = ValidateCertificate;",
    ),
    Rule(
        "tls-rust",
        "CWE-295",
        "Rust",
        _c(r"\.danger_accept_invalid_(?:certs|hostnames)\s*\(\s*true\s*\)"),
        keywords=("danger_accept_invalid",),
        example="let client = Client::builder().danger_accept_invalid_certs(true).build()?;",
        near_miss="let client = Client::builder().https_only(true).build()?;",
    ),
    Rule(
        "tls-shell",
        "CWE-295",
        "shell",
        _c(
            r"\bcurl\b[^|;&\n]*\s(?:-[a-zA-Z]*k[a-zA-Z]*|--insecure)(?=\s|$)|\bwget\b.*--no-check-certificate\b"
            r"|\bhttp\.sslVerify\s*(?:=\s*|\s+)false\b|\bGIT_SSL_NO_VERIFY=(?:1|true)\b|\bstrict-ssl\s+false\b"
        ),
        keywords=("curl", "wget", "sslverify", "git_ssl_no_verify", "strict-ssl"),
        example="curl -sk https://$HOST/install.sh | sh",
        near_miss="curl -fsSL https://$HOST/install.sh -o install.sh",
        in_strings=True,
    ),
    # ---- HTML injection, XSS and template injection (CWE-79, CWE-1336)
    Rule(
        "inner-html",
        "CWE-79",
        "JS/TS",
        _c(r"\.(?:innerHTML|outerHTML)\s*\+?=(?!=)"),
        keywords=("innerhtml", "outerhtml"),
        example="el.innerHTML = `<b>${user.name}</b>`;",
        near_miss="el.textContent = `${user.name}`;",
        check=_rhs_html,
        unless=_c(r"(?i)sanitiz|DOMPurify|escape|encodeHTML|\bhtmlEncode"),
    ),
    Rule(
        "document-write",
        "CWE-79",
        "JS/TS",
        _c(r"\bdocument\.write(?:ln)?\s*\("),
        keywords=("document.write",),
        example="document.write('<p>' + location.hash + '</p>');",
        near_miss="document.write('<p>Loading</p>');",
        check=_html_arg,
        unless=_c(r"(?i)sanitiz|DOMPurify|escape"),
    ),
    Rule(
        "insert-html",
        "CWE-79",
        "JS/TS (DOM, jQuery)",
        _c(
            r"\.insertAdjacentHTML\s*\(|\$\([^)]*\)\s*\.(?:html|append|prepend|after|before|replaceWith)\s*\("
        ),
        keywords=("insertadjacenthtml", "$("),
        example="$('#list').append('<li>' + item.name + '</li>');",
        near_miss="$('#list').text(item.name);",
        check=lambda line, m, t: (
            _html_arg(line, m, t) if "insertAdjacent" in m.group() else _html_concat(line, m, t)
        ),
        unless=_c(r"(?i)sanitiz|DOMPurify|escape"),
    ),
    Rule(
        "dangerously-set-inner-html",
        "CWE-79",
        "React (JSX/TSX)",
        _c(r"dangerouslySetInnerHTML\s*=\s*\{\{\s*__html\s*:\s*(?P<v>[^}]+)"),
        keywords=("dangerouslysetinnerhtml",),
        example="<div dangerouslySetInnerHTML={{ __html: comment.body }} />",
        near_miss="<div>{comment.body}</div>",
        check=_dangerously,
        unless=_c(r"(?i)sanitiz|DOMPurify|escape"),
    ),
    Rule(
        "mark-safe-formatted",
        "CWE-79",
        "Python (Django, Flask/Jinja), Go, C#",
        _c(
            r"\b(?:mark_safe|Markup|SafeString|render_template_string|Template|template\.HTML|Html\.Raw)\s*\("
        ),
        keywords=("mark_safe", "markup", "safestring", "render_template_string", "template", "html.raw"),
        example='return mark_safe(f"<b>{user.name}</b>")',
        near_miss='return format_html("<b>{}</b>", user.name)',
        check=_first_html_formatted,
        unless=_c(r"(?i)\bescape\(|\bconditional_escape\(|html\.escape\(|HtmlEncode"),
    ),
    Rule(
        "html-safe-formatted",
        "CWE-79",
        "Ruby (Rails)",
        _c(r"\.html_safe\b"),
        keywords=("html_safe",),
        example='"<b>#{params[:name]}</b>".html_safe',
        near_miss="content_tag(:b, params[:name])",
        check=_before_formatted,
        unless=_c(r"\b(?:h|html_escape|ERB::Util\.\w+|sanitize)\("),
    ),
    Rule(
        "php-echo-input",
        "CWE-79",
        "PHP",
        _c(r"\b(?:echo|print)\b[^;]*\$_(?:GET|POST|REQUEST|COOKIE)\b"),
        keywords=("$_get", "$_post", "$_request", "$_cookie"),
        example="echo 'Hello ' . $_GET['name'];",
        near_miss="echo 'Hello ' . htmlspecialchars($_GET['name'], ENT_QUOTES);",
        unless=_c(
            r"\b(?:htmlspecialchars|htmlentities|intval|strip_tags|esc_html|esc_attr|urlencode|json_encode)\("
            r"|\(int\)"
        ),
        in_strings=True,
    ),
    Rule(
        "servlet-echo-input",
        "CWE-79",
        "Java",
        _c(
            r"\.(?:getWriter\(\)|getOutputStream\(\))\s*\.\s*(?:print|println|write|append)\s*\(.*\bgetParameter\s*\("
        ),
        keywords=("getparameter",),
        example='response.getWriter().println("Hello " + request.getParameter("name"));',
        near_miss='response.getWriter().println("Hello " + Encode.forHtml(request.getParameter("name")));',
        unless=_c(r"(?i)encode|escape|sanitiz"),
    ),
    # ---- password hashed with a broken hash (CWE-328, CWE-916)
    Rule(
        "weak-password-hash",
        "CWE-328",
        "all",
        _c(r"(?i)\b(?:md5|md4|md2|sha-?1)\b(?:['\"]\s*\))?\s*[.(:]"),
        keywords=("md5", "md4", "md2", "sha1", "sha-1"),
        example="hashed = hashlib.md5(password.encode()).hexdigest()",
        near_miss="digest = hashlib.md5(data).hexdigest()",
        check=_password_near,
        unless=_c(r"(?i)pbkdf2|hmac|bcrypt|scrypt|argon|\bcrypt\(|password_hash\(|checksum"),
        in_strings=True,
    ),
    # ---- classic bugs (CWE-242, CWE-120, CWE-377) and unverified JWTs (CWE-347)
    Rule(
        "c-gets",
        "CWE-242",
        "C/C++",
        _c(r"(?<![\w.>:])gets\(\s*\w+\s*\)"),
        keywords=("gets",),
        example="gets(buffer);",
        near_miss="fgets(buffer, sizeof buffer, stdin);",
    ),
    Rule(
        "c-scanf-unbounded",
        "CWE-120",
        "C/C++",
        _c(r"""\b(?:scanf|fscanf|sscanf|wscanf)\s*\([^;]*"[^"]*%s"""),
        keywords=("scanf",),
        example='scanf("%s", name);',
        near_miss='scanf("%63s", name);',
    ),
    Rule(
        "insecure-temp-file",
        "CWE-377",
        "Python, C",
        _c(r"\btempfile\.mktemp\s*\(|(?<![\w.>:])(?:mktemp|tmpnam|tempnam)\s*\("),
        keywords=("mktemp", "tmpnam", "tempnam"),
        example="path = tempfile.mktemp(suffix='.csv')",
        near_miss="fd, path = tempfile.mkstemp(suffix='.csv')",
    ),
    Rule(
        "jwt-unverified",
        "CWE-347",
        "Python, JS/TS",
        _c(r"""['"]verify_signature['"]\s*:\s*False\b|\balgorithms\s*[=:]\s*\[\s*['"]none['"]"""),
        keywords=("verify_signature", "algorithms"),
        example='claims = jwt.decode(token, options={"verify_signature": False})',
        near_miss='claims = jwt.decode(token, key, algorithms=["HS256"])',
        in_strings=True,
    ),
)
