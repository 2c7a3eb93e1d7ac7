import textwrap
from pathlib import Path

import pytest

from alerts.model import Grade
from edge.config import parse_config_text
from hub.cli import main
from hub.config import (
    ConfigError,
    build_directory,
    build_escalation,
    build_grouping,
    build_sms,
    build_smtp,
    build_voice,
    load_deployment,
)
from hub.edge_config import EdgeTarget, render_edge_config

GOOD = """\
community: {id: hongxing, name: 红星社区}
grids:
  - {id: grid-1, name: 第一网格, managers: [wang-li]}
people:
  - id: wang-li
    name: 王丽
    channels:
      - {type: webhook, url: "http://127.0.0.1:9/notify", secret: "0123456789abcdef0123"}
gateways:
  - id: gw-b1
    sensors:
      - {id: gas-1, kind: gas, unit_id: 1, location: 厨房, grid: grid-1}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "deployment.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def issues(path: Path) -> list[tuple[int | None, str, object, str]]:
    with pytest.raises(ConfigError) as caught:
        load_deployment(path)
    return [(i.line, i.path, i.value, i.message) for i in caught.value.issues]


def test_demo_deployment_loads_with_its_secret(demo_deployment: Path) -> None:
    deployment = load_deployment(demo_deployment)
    assert deployment.community.id == "hongxing"
    assert sum(len(g.sensors) for g in deployment.gateways) == 20
    directory = build_directory(deployment, demo_deployment.parent)
    (manager,) = directory.managers_for("grid-1")
    assert manager.targets[0].secret.startswith("test-webhook-secret")
    assert "test-webhook-secret" not in repr(manager)


def test_unknown_key_is_named_with_its_line(tmp_path: Path) -> None:
    found = issues(write(tmp_path, GOOD.replace("    name: 王丽\n", "    name: 王丽\n    colour: red\n")))
    assert found == [(7, "people[0].colour", "red", "unknown key")]


def test_bad_values_are_named_with_key_value_and_line(tmp_path: Path) -> None:
    text = GOOD.replace("kind: gas, unit_id: 1", "kind: gaz, unit_id: 300").replace("id: gw-b1", "id: GW-1")
    found = issues(write(tmp_path, text))
    by_path = {path: (line, value, message) for line, path, value, message in found}
    assert by_path["gateways[0].id"][:2] == (10, "GW-1")
    assert by_path["gateways[0].sensors[0].kind"][:2] == (12, "gaz")
    assert "unknown sensor kind" in by_path["gateways[0].sensors[0].kind"][2]
    assert by_path["gateways[0].sensors[0].unit_id"][:2] == (12, 300)


def test_dangling_references_and_duplicates(tmp_path: Path) -> None:
    text = GOOD.replace("managers: [wang-li]", "managers: [li-na]") + (
        "      - {id: gas-1, kind: gas, unit_id: 1, location: 厨房, grid: grid-9}\n"
    )
    messages = {(path, message) for _, path, _, message in issues(write(tmp_path, text))}
    assert ("grids[0].managers[0]", "no person with this id in people") in messages
    assert ("gateways[0].sensors[1].id", "duplicate sensor id (ids are unique in a deployment)") in messages
    assert ("gateways[0].sensors[1].unit_id", "duplicate Modbus unit id on gateway gw-b1") in messages
    assert ("gateways[0].sensors[1].grid", "no grid with this id in grids") in messages


def test_escalation_chain_is_checked_and_built(tmp_path: Path, demo_deployment: Path) -> None:
    levels = (
        "escalation:\n"
        "  levels:\n"
        "    - {id: property, name: 物业, people: [wang-li, nobody]}\n"
        "    - {id: property, name: 街道, people: [wang-li]}\n"
    )
    (tmp_path / "bad").mkdir()
    messages = {(path, message) for _, path, _, message in issues(write(tmp_path / "bad", GOOD + levels))}
    assert ("escalation.levels[0].people[1]", "no person with this id in people") in messages
    assert ("escalation.levels[1].id", "duplicate escalation level id") in messages
    deadlines = "escalation:\n  answer_within_s: {V: 10, II: 0.5}\n"
    messages = {(path, message) for _, path, _, message in issues(write(tmp_path / "bad", GOOD + deadlines))}
    assert messages == {
        ("escalation.answer_within_s.V.[key]", "Input should be 'I', 'II', 'III' or 'IV'"),
        ("escalation.answer_within_s.II", "Input should be greater than or equal to 1"),
    }
    policy = build_escalation(load_deployment(demo_deployment))
    assert [level.id for level in policy.levels] == ["property", "subdistrict"]
    assert policy.deadline_ms(Grade.III) == 300_000 and policy.deadline_ms(Grade.IV) == 86_400_000


def test_grouping_defaults_overrides_and_bad_values(tmp_path: Path) -> None:
    policy = build_grouping(load_deployment(write(tmp_path, GOOD)))
    assert policy is not None and policy.group_wait_s == 0
    grades = (Grade.I, Grade.II, Grade.III, Grade.IV)
    assert [policy.interval_ms(g) for g in grades] == [10_000, 10_000, 10_000, 300_000]
    assert policy.max_pages_per_hour == 30
    tuned = GOOD + "grouping: {interval_s: {IV: 600}, max_pages_per_hour: null}\n"
    policy = build_grouping(load_deployment(write(tmp_path, tuned)))
    assert policy is not None and policy.interval_ms(Grade.IV) == 600_000 and policy.max_pages_per_hour is None
    assert policy.interval_ms(Grade.II) == 10_000
    assert build_grouping(load_deployment(write(tmp_path, GOOD + "grouping: {enabled: false}\n"))) is None
    capped = GOOD.replace("    name: 王丽\n", "    name: 王丽\n    max_pages_per_hour: 5\n")
    (person,) = build_directory(load_deployment(write(tmp_path, capped)), tmp_path).people
    assert person.max_pages_per_hour == 5
    bad = GOOD.replace("    name: 王丽\n", "    name: 王丽\n    max_pages_per_hour: 0\n")
    bad += "grouping: {interval_s: {II: -1, V: 3}, group_wait: 5}\n"
    found = {(path, message) for _, path, _, message in issues(write(tmp_path, bad))}
    assert found == {
        ("people[0].max_pages_per_hour", "Input should be greater than or equal to 1"),
        ("grouping.interval_s.II", "Input should be greater than or equal to 0"),
        ("grouping.interval_s.V.[key]", "Input should be 'I', 'II', 'III' or 'IV'"),
        ("grouping.group_wait", "unknown key"),
    }


SMS = "sms: {format: generic, url: 'https://sms.example.cn/send', token_env: ANJU_TEST_SMS_TOKEN}\n"


def test_channels_can_be_kept_for_some_grades_but_every_grade_has_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANJU_TEST_SMS_TOKEN", "a-long-enough-sms-token-0123")
    two = GOOD.replace(
        '      - {type: webhook, url: "http://127.0.0.1:9/notify", secret: "0123456789abcdef0123"}\n',
        '      - {type: webhook, url: "http://127.0.0.1:9/notify", secret: "0123456789abcdef0123", grades: [IV]}\n'
        "      - {type: sms, phone: '+8613800000000', grades: [I, II, III]}\n",
    )
    (person,) = build_directory(load_deployment(write(tmp_path, two + SMS)), tmp_path).people
    assert person.takes(0, 4) and not person.takes(0, 3) and person.takes(1, 1) and not person.takes(1, 4)
    gap = two.replace("grades: [I, II, III]", "grades: [I, II]")
    assert {(p, m) for _, p, _, m in issues(write(tmp_path, gap + SMS))} == {
        ("people[0]", "no channel takes grade III (channels' grades leave it out)")
    }
    empty = two.replace("grades: [IV]", "grades: []")
    assert ("people[0].channels[0].grades", "List should have at least 1 item after validation, not 0") in {
        (p, m) for _, p, _, m in issues(write(tmp_path, empty + SMS))
    }


def test_wecom_and_dingtalk_channels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    robots = GOOD.replace(
        '      - {type: webhook, url: "http://127.0.0.1:9/notify", secret: "0123456789abcdef0123"}\n',
        '      - {type: wecom, url: "https://qyapi.weixin.qq.com/cgi-bin/webhook/send", secret_env: WECOM_KEY}\n'
        '      - {type: dingtalk, url: "https://oapi.dingtalk.com/robot/send", secret_env: DING_SECRET,\n'
        "         token_env: DING_TOKEN}\n",
    )
    monkeypatch.setenv("WECOM_KEY", "693a91f6-7xxx-4bc4-97a0-0ec2sifa5aaa")
    monkeypatch.setenv("DING_SECRET", "SEC" + "a" * 64)
    path = write(tmp_path, robots)
    messages = {message for _, _, _, message in issues(path)}
    assert messages == {"environment variable DING_TOKEN is not set"}
    monkeypatch.setenv("DING_TOKEN", "b" * 64)
    (person,) = build_directory(load_deployment(path), tmp_path).people
    assert [type(t).__name__ for t in person.targets] == ["WeComTarget", "DingTalkTarget"]
    no_token = robots.replace("\n         token_env: DING_TOKEN}", "}")
    assert {m for _, _, _, m in issues(write(tmp_path, no_token))} == {"give one of token_file, token_env"}
    stray = GOOD.replace('secret: "0123456789abcdef0123"}', 'secret: "0123456789abcdef0123", token_env: X}')
    assert {m for _, _, _, m in issues(write(tmp_path, stray))} == {"only a dingtalk channel takes a token"}


def test_rosters_are_checked_and_built(tmp_path: Path) -> None:
    roster = (
        "rosters:\n"
        "  - id: duty\n"
        "    grids: [grid-1, grid-9]\n"
        "    team: [wang-li, nobody]\n"
        "    shifts: [{name: day, start: '08:00', end: '20:00'}, {name: night, start: '19:00', end: '08:00'}]\n"
        "    overrides: [{date: 2026-02-01, shift: evening, person: wang-li}]\n"
    )
    messages = {(path, message) for _, path, _, message in issues(write(tmp_path, GOOD + roster))}
    assert {
        ("rosters[0].team[1]", "no person with this id in people"),
        ("rosters[0].grids[1]", "no grid with this id in grids"),
        ("rosters[0].overrides[0].shift", "no shift with this name in the roster"),
    } <= messages
    assert any(path == "rosters[0].shifts" and "overlap" in message for path, message in messages), messages
    bad_time = (
        GOOD
        + "rosters: [{id: d, grids: [grid-1], team: [wang-li], shifts: [{name: x, start: '8:00', end: '20:00'}]}]\n"
    )
    assert issues(write(tmp_path, bad_time))[0][1] == "rosters[0].shifts[0].start"
    good = (
        GOOD
        + "rosters: [{id: d, grids: [grid-1], team: [wang-li], shifts: [{name: x, start: '08:00', end: '08:00'}]}]\n"
    )
    directory = build_directory(load_deployment(write(tmp_path, good)), tmp_path)
    assert [p.id for p in directory.on_duty("grid-1", 0)] == ["wang-li"]


def test_quiet_hours_are_checked_and_built(tmp_path: Path) -> None:
    quiet = GOOD.replace("    name: 王丽\n", "    name: 王丽\n    quiet_hours: {start: '22:00', end: '22:00'}\n")
    assert issues(write(tmp_path, quiet))[0][1:] == (
        "people[0].quiet_hours",
        "22:00",
        "quiet hours must not start and end at the same time",
    )
    good = quiet.replace("end: '22:00'", "end: '07:00', include_grade_iii: true")
    (person,) = build_directory(load_deployment(write(tmp_path, good)), tmp_path).people
    assert person.quiet is not None and person.quiet.include_grade_iii and person.quiet.holds(3)


def test_email_channels_need_an_address_and_the_smtp_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    email = GOOD.replace(
        '      - {type: webhook, url: "http://127.0.0.1:9/notify", secret: "0123456789abcdef0123"}\n',
        "      - {type: email, address: wang@example.cn}\n",
    )
    assert {m for _, _, _, m in issues(write(tmp_path, email))} == {
        "an email channel needs the deployment's smtp server"
    }
    smtp = "smtp: {host: 127.0.0.1, port: 2525, sender: anju@example.cn, starttls: false, password_env: SMTP_PW}\n"
    assert {m for _, _, _, m in issues(write(tmp_path, email + smtp))} == {"environment variable SMTP_PW is not set"}
    monkeypatch.setenv("SMTP_PW", "a-long-enough-password")
    deployment = load_deployment(write(tmp_path, email + smtp))
    server = build_smtp(deployment, tmp_path)
    assert server is not None and server.port == 2525 and server.password == "a-long-enough-password"
    assert "a-long-enough-password" not in repr(server)
    (person,) = build_directory(deployment, tmp_path).people
    assert [type(t).__name__ for t in person.targets] == ["EmailTarget"]
    no_address = email.replace("{type: email, address: wang@example.cn}", "{type: email, url: 'http://x.cn/'}")
    assert "an email channel takes an address (and no url)" in {
        m for _, _, _, m in issues(write(tmp_path, no_address + smtp))
    }


def test_sms_channels_need_a_phone_and_the_gateway(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sms = GOOD.replace(
        '      - {type: webhook, url: "http://127.0.0.1:9/notify", secret: "0123456789abcdef0123"}\n',
        "      - {type: sms, phone: '+8613800000000'}\n",
    )
    assert {m for _, _, _, m in issues(write(tmp_path, sms))} == {"an sms channel needs the deployment's sms gateway"}
    aliyun = "sms: {format: aliyun, url: 'https://dysmsapi.aliyuncs.com/', access_key_id: LTAI5t, secret_env: ALI}\n"
    messages = {m for _, _, _, m in issues(write(tmp_path, sms + aliyun))}
    assert messages == {"the aliyun format needs sign_name, template_code"}
    full = aliyun.replace("secret_env: ALI}", "secret_env: ALI, sign_name: 安居, template_code: SMS_1}")
    assert {m for _, _, _, m in issues(write(tmp_path, sms + full))} == {"environment variable ALI is not set"}
    monkeypatch.setenv("ALI", "a-long-enough-secret-0123")
    deployment = load_deployment(write(tmp_path, sms + full))
    gateway = build_sms(deployment, tmp_path)
    assert gateway is not None and gateway.format == "aliyun" and "a-long-enough" not in repr(gateway)
    (person,) = build_directory(deployment, tmp_path).people
    assert [type(t).__name__ for t in person.targets] == ["SmsTarget"]


def test_voice_channels_need_a_phone_and_the_provider_and_errors_name_the_field(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    voice = GOOD.replace(
        '      - {type: webhook, url: "http://127.0.0.1:9/notify", secret: "0123456789abcdef0123"}\n',
        "      - {type: voice, phone: '+8613800000000'}\n      - {type: voice, phone: '028-12345678'}\n",
    )
    found = {(path, m) for _, path, _, m in issues(write(tmp_path, voice))}
    needs = "a voice channel needs the deployment's voice gateway"
    assert found == {("people[0].channels[0]", needs), ("people[0].channels[1]", needs)}
    aliyun = "voice: {format: aliyun, url: 'https://dyvmsapi.aliyuncs.com/', access_key_id: LTAI5t, secret_env: VMS}\n"
    assert issues(write(tmp_path, voice + aliyun)) == [
        (14, "voice", "https://dyvmsapi.aliyuncs.com/", "the aliyun format needs tts_code")
    ]
    bad = aliyun.replace("secret_env: VMS}", "secret_env: VMS, tts_code: TTS_1, play_times: 5, colour: red}")
    by_path = {path: (value, m) for _, path, value, m in issues(write(tmp_path, voice + bad))}
    assert by_path["voice.play_times"][0] == 5 and "less than or equal to 3" in by_path["voice.play_times"][1]
    assert by_path["voice.colour"] == ("red", "unknown key")
    wrong_phone = voice.replace("'028-12345678'", "'12345'")
    assert [(p, v) for _, p, v, _ in issues(write(tmp_path, wrong_phone + aliyun))] == [
        ("people[0].channels[1].phone", "12345")
    ]
    full = aliyun.replace("secret_env: VMS}", "secret_env: VMS, tts_code: TTS_1, called_show_number: '02866660000'}")
    assert {m for _, _, _, m in issues(write(tmp_path, voice + full))} == {"environment variable VMS is not set"}
    monkeypatch.setenv("VMS", "a-long-enough-secret-0123")
    deployment = load_deployment(write(tmp_path, voice + full))
    gateway = build_voice(deployment, tmp_path)
    assert gateway is not None and gateway.format == "aliyun" and gateway.called_show_number == "02866660000"
    assert gateway.play_times == 2 and "a-long-enough" not in repr(gateway)
    (person,) = build_directory(deployment, tmp_path).people
    assert [type(t).__name__ for t in person.targets] == ["VoiceTarget", "VoiceTarget"]
    landline_sms = voice.replace("{type: voice, phone: '028-12345678'}", "{type: sms, phone: '028-12345678'}")
    sms = "sms: {format: generic, url: 'https://sms.example.cn/send', token_env: VMS}\n"
    assert issues(write(tmp_path, landline_sms + full + sms)) == [
        (9, "people[0].channels[1]", "028-12345678", "an sms channel takes a mobile number, not a fixed line")
    ]


def test_secret_problems(tmp_path: Path) -> None:
    short = GOOD.replace('secret: "0123456789abcdef0123"', 'secret: "short"')
    assert issues(write(tmp_path, short))[0][3] == "secret shorter than 16 characters"
    missing = GOOD.replace('secret: "0123456789abcdef0123"', "secret_file: nowhere.secret")
    assert "nowhere.secret" in issues(write(tmp_path, missing))[0][3]
    both = GOOD.replace('secret: "0123456789abcdef0123"', 'secret: "0123456789abcdef0123", secret_env: X')
    assert issues(write(tmp_path, both))[0][3] == "give exactly one of secret, secret_file, secret_env"


def test_broken_yaml_and_wrong_shape(tmp_path: Path) -> None:
    (line, _, _, message) = issues(write(tmp_path, "community: {id: x\ngrids: [\n"))[0]
    assert message.startswith("not valid YAML") and line is not None
    assert issues(write(tmp_path, "- just\n- a list\n"))[0][3] == "expected a mapping at the top"
    assert "cannot read" in issues(tmp_path / "absent.yaml")[0][3]


def test_check_config_cli(tmp_path: Path, demo_deployment: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", str(demo_deployment)]) == 0
    assert "20 sensors" in capsys.readouterr().out
    bad = write(tmp_path, GOOD.replace("kind: gas", "kind: radon"))
    assert main(["check-config", str(bad)]) == 2
    assert "deployment.yaml:12: gateways[0].sensors[0].kind = 'radon'" in capsys.readouterr().err


def test_edge_config_needs_no_webhook_secret(capsys: pytest.CaptureFixture[str]) -> None:
    demo = Path(__file__).resolve().parents[2] / "deploy" / "demo" / "deployment.yaml"
    assert main(["edge-config", "--config", str(demo), "--gateway", "gw-b2", "--outbox", "/tmp/o.sqlite3"]) == 0
    text = capsys.readouterr().out
    assert "\ngateway: gw-b2\n" in text and text.count("\n  - id: ") == 10
    assert main(["edge-config", "--config", str(demo), "--gateway", "gw-b9", "--outbox", "o"]) == 2
    assert "gw-b9" in capsys.readouterr().err


def test_an_rs485_gateway_renders_an_rtu_edge_config(tmp_path: Path) -> None:
    text = GOOD.replace("  - id: gw-b1\n", "  - id: gw-b1\n    modbus: {serial: /dev/ttyUSB0, baudrate: 19200}\n")
    deployment = load_deployment(write(tmp_path, text))
    rendered = render_edge_config(
        deployment, "gw-b1", EdgeTarget(mqtt_host="127.0.0.1", mqtt_port=1883, outbox=Path("o"))
    )
    modbus = parse_config_text(rendered, base_dir=tmp_path, source="rendered").modbus
    assert (modbus.serial, modbus.baudrate) == ("/dev/ttyUSB0", 19200)
    bad = text.replace("baudrate: 19200", "baudrate: 9601")
    assert any(path == "gateways[0].modbus.baudrate" for _, path, _, _ in issues(write(tmp_path, bad)))


def test_the_rendered_edge_yaml_reads_back_with_ids_yaml_would_misread_quoted(tmp_path: Path) -> None:
    text = GOOD.replace("id: gw-b1", 'id: "1"').replace("{id: gas-1,", '{id: "010",').replace("gas-1", "x")
    rendered = render_edge_config(
        load_deployment(write(tmp_path, text)),
        "1",
        EdgeTarget(mqtt_host="127.0.0.1", mqtt_port=1883, outbox=Path("/var/lib/anju-edge/outbox.sqlite3")),
        poll_interval_s=2.5,
        outbox_max_bytes=65536,
    )
    assert rendered.startswith("# Edge configuration of gateway 1, generated by anju-hub edge-config.\n")
    config = parse_config_text(rendered, base_dir=tmp_path, source="rendered")
    assert (config.gateway, config.sensors[0].id, config.sensors[0].unit_id) == ("1", "010", 1)
    assert (config.poll_interval_s, config.outbox_max_bytes) == (2.5, 65536)
    assert config.outbox == Path("/var/lib/anju-edge/outbox.sqlite3")


def test_duplicate_people_and_grids_are_named(tmp_path: Path) -> None:
    grid = "  - {id: grid-1, name: 第一网格, managers: [wang-li]}\n"
    person = "  - {id: wang-li, name: 王丽}\n"
    text = GOOD.replace(grid, grid + grid.replace("第一网格", "又一网格")).replace("people:\n", "people:\n" + person)
    found = {(path, message) for _, path, _, message in issues(write(tmp_path, text))}
    assert ("grids[1].id", "duplicate grid id") in found
    assert ("people[1].id", "duplicate person id") in found


def test_rules_overrides_and_sensor_context_are_checked_at_load(tmp_path: Path) -> None:
    good = GOOD.replace(
        "{id: gas-1, kind: gas, unit_id: 1, location: 厨房, grid: grid-1}",
        "{id: gas-1, kind: gas, unit_id: 1, location: 厨房, grid: grid-1, building: b1, space: b1-101-kitchen, "
        "tags: [elder-living-alone]}",
    )
    rules = """\
rules:
  community:
    - {id: gas-level-1, level: {above: 20.0}, hysteresis: {clear: 16.0}}
"""
    deployment = load_deployment(write(tmp_path, good + rules), check_secrets=False)
    [(_, sensor)] = list(deployment.sensors())
    assert (sensor.building, sensor.space, sensor.tags) == ("b1", "b1-101-kitchen", ["elder-living-alone"])
    bad = """\
rules:
  community:
    - {id: gas-level-1, hysteresis: {clear: 30.0}}
  sensors:
    nobody: []
"""
    with pytest.raises(ConfigError) as caught:
        load_deployment(write(tmp_path, good + bad), check_secrets=False)
    text = str(caught.value)
    assert "deployment.yaml:15: rules.community[0] = 'gas-level-1': hysteresis.clear: must be below" in text, text
    assert "deployment.yaml:17: rules.sensors.nobody = 'nobody': no sensor with this id" in text, text
