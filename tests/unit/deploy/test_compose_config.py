"""docker-compose.yml cannot be run on machines without a Docker engine; check what can be checked:
it parses, every service gets the settings it needs, and the prepare step runs a real command."""

from pathlib import Path

import yaml

from shared.settings import SERVICE_PORTS, SERVICES, Settings

REPO = Path(__file__).resolve().parents[3]


def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def test_every_service_is_wired_to_kafka_and_postgres() -> None:
    services = compose()["services"]
    for name in SERVICES:
        env = services[name]["environment"]
        assert env["SERVICE"] == name
        assert env["DATABASE_URL"].startswith("postgresql://")
        assert env["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
        assert services[name]["depends_on"]["prepare"]["condition"] == "service_completed_successfully"
        assert (REPO / "services" / name / "app.py").exists()


def test_published_ports_match_the_default_settings() -> None:
    services = compose()["services"]
    for name in SERVICES:
        assert services[name]["ports"] == [f"{SERVICE_PORTS[name]}:8000"]


def test_prepare_runs_the_devstack_migrate_command_and_databases_exist() -> None:
    spec = compose()["services"]["prepare"]
    assert spec["command"] == ["python", "-m", "shared.devstack", "migrate"]
    init_sql = (REPO / "deploy" / "postgres" / "init.sql").read_text()
    for name in SERVICES:
        assert f"CREATE DATABASE {Settings().database_prefix}{name};" in init_sql


def test_kafka_does_not_invent_topics() -> None:
    env = compose()["services"]["kafka"]["environment"]
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"


def test_the_notifier_mails_the_compose_mail_catcher() -> None:
    services = compose()["services"]
    env = services["notifier"]["environment"]
    assert (env["SMTP_HOST"], env["SMTP_PORT"], env["SMTP_SECURITY"]) == ("mail", "1025", "none")
    assert "mail" in services


def test_the_dashboard_runs_its_app_and_reaches_the_allocator_by_name() -> None:
    spec = compose()["services"]["dashboard"]
    assert spec["command"][:2] == ["uvicorn", "services.ops.dashboard:app"]
    assert (REPO / "services" / "ops" / "dashboard.py").exists() and (REPO / "services" / "ops" / "dashboard.html").exists()
    assert spec["environment"]["ALLOCATOR_URL"] == "http://allocator:8000"
    assert spec["environment"]["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
    assert spec["ports"] == [f"{Settings.model_fields['dashboard_port'].default}:8000"]  # the default, not this session's
