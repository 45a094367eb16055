"""Resolve the local stack's jars from Maven Central with the ordinary Maven client.

Artifacts land in a cache directory outside the repository (``KENSHIN_CACHE_DIR``) and are reused when present;
a ``.complete`` marker is written only after a resolution finished, so an interrupted download is redone.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import zipfile
from dataclasses import dataclass
from pathlib import Path

from hub.runtime.errors import StackError

KAFKA_VERSION = "4.1.1"
LOG4J_VERSION = "2.24.3"
APICURIO_VERSION = "2.6.13.Final"

_KAFKA_POM = """<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>kenshin-hub.local</groupId>
  <artifactId>kafka-runtime</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>{kafka}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId><version>{log4j}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId><version>{log4j}</version>
    </dependency>
  </dependencies>
</project>
"""

DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"


@dataclass(frozen=True)
class Toolchain:
    java: str
    mvn: str


def require_java(min_major: int = 17) -> str:
    """Path of a ``java`` of at least ``min_major``; a :class:`StackError` naming the fix otherwise."""
    java = shutil.which("java")
    if java is None:
        raise StackError(
            "Java is not installed or not on PATH. The local stack runs Apache Kafka and the schema registry on "
            f"a JVM: install Java {min_major}+ (Debian: apt-get install openjdk-17-jre-headless)."
        )
    out = subprocess.run([java, "-version"], capture_output=True, text=True, check=False)  # noqa: S603
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if match is None:
        raise StackError(f"could not read the Java version from `{java} -version`")
    major = int(match.group(1))
    if major == 1 and match.group(2):
        major = int(match.group(2))
    if major < min_major:
        raise StackError(f"Java {major} found at {java}; Apache Kafka {KAFKA_VERSION} needs Java {min_major}+.")
    return java


def require_maven() -> str:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise StackError(
            "Maven (mvn) is not installed or not on PATH. The local stack resolves Apache Kafka from Maven Central "
            "with it: install Maven (Debian: apt-get install maven)."
        )
    return mvn


def _run_maven(mvn: str, args: list[str], cwd: Path, log: Path) -> None:
    cmd = [mvn, "-B", "-q", *args]
    with log.open("ab") as out:
        proc = subprocess.run(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, check=False)  # noqa: S603
    if proc.returncode != 0:
        tail = log.read_text(errors="replace").splitlines()[-15:]
        raise StackError(f"Maven failed ({' '.join(cmd)}), exit {proc.returncode}; see {log}:\n" + "\n".join(tail))


def resolve_kafka(cache_dir: Path) -> Path:
    """Directory of the Kafka broker's classpath (``libs/*.jar``), resolving it first if needed."""
    home = cache_dir / f"kafka-{KAFKA_VERSION}"
    libs = home / "libs"
    if (home / ".complete").exists():
        return libs
    mvn = require_maven()
    home.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(libs, ignore_errors=True)
    (home / "pom.xml").write_text(_KAFKA_POM.format(kafka=KAFKA_VERSION, log4j=LOG4J_VERSION))
    _run_maven(
        mvn,
        [f"{DEPENDENCY_PLUGIN}:copy-dependencies", f"-DoutputDirectory={libs}", "-DincludeScope=runtime"],
        home,
        home / "maven.log",
    )
    if not any(libs.glob("kafka_2.13-*.jar")):
        raise StackError(f"Maven finished but no kafka_2.13 jar is in {libs}")
    (home / ".complete").write_text(KAFKA_VERSION)
    return libs


def resolve_apicurio(cache_dir: Path) -> Path:
    """Path of Apicurio Registry's runner jar (its ``lib/`` beside it), resolving it first if needed."""
    home = cache_dir / f"apicurio-registry-{APICURIO_VERSION}"
    runner = home / "app" / f"apicurio-registry-app-{APICURIO_VERSION}-runner.jar"
    if (home / ".complete").exists() and runner.exists():
        return runner
    mvn = require_maven()
    home.mkdir(parents=True, exist_ok=True)
    download = home / "download"
    _run_maven(
        mvn,
        [
            f"{DEPENDENCY_PLUGIN}:copy",
            f"-Dartifact=io.apicurio:apicurio-registry-app:{APICURIO_VERSION}:zip:all",
            f"-DoutputDirectory={download}",
        ],
        home,
        home / "maven.log",
    )
    archives = list(download.glob("*.zip"))
    if not archives:
        raise StackError(f"Maven finished but no Apicurio distribution is in {download}")
    shutil.rmtree(home / "app", ignore_errors=True)
    with zipfile.ZipFile(archives[0]) as zf:
        zf.extractall(home / "app")
    for archive in archives:
        archive.unlink()
    if not runner.exists():
        raise StackError(f"the Apicurio distribution has no {runner.name}")
    (home / ".complete").write_text(APICURIO_VERSION)
    return runner
