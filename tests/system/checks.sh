#!/bin/bash
# Run INSIDE a freshly booted Debian (systemd as PID 1) as root, with this checkout at
# /root/gate: install gate as an operator would and check it with systemctl/journalctl.
# Started by scripts/test-system (nspawn) and scripts/test-system-arm64 (qemu VM).
#   checks.sh full | quick | arm64
# Prints one "ok"/"FAIL" line per check and "figure NAME VALUE" lines; exits 1 on any failure.
set -uo pipefail
MODE=${1:-full}
SRC=/root/gate
GATE=/opt/gate/.venv/bin/gate
PY=/opt/gate/.venv/bin/python
STATE=/var/lib/gate
REPLAY=$STATE/replay
EVENT=sys-eve
FAILED=0
SCALE=1; [ "$MODE" = arm64 ] && SCALE=6    # emulated aarch64 runs everything several times slower

ok()     { echo "ok   $*"; }
fail()   { echo "FAIL $*"; FAILED=$((FAILED + 1)); }
check()  { local what=$1; shift; if "$@"; then ok "$what"; else fail "$what"; fi; }
expect() { if [ "$2" = "$3" ]; then ok "$1"; else fail "$1 (got '$2', wanted '$3')"; fi; }
figure() { echo "figure $1 $2"; }
section(){ echo; echo "== $*"; }
prop()   { systemctl show -P "$2" "$1"; }
# wait_for SECONDS CMD...: poll until CMD succeeds
wait_for() { local end=$((SECONDS + $1 * SCALE)); shift; until "$@"; do [ $SECONDS -ge $end ] && return 1; sleep 0.3; done; }
journal_has() { journalctl --no-pager -q -u "$1" --since "@$2" | grep -q -- "$3"; }
now() { date +%s; }
ms_now() { date +%s%3N; }

# House count of admissions for tonight's event, from the dashboard's JSON.
house_admitted() {
  "$PY" - <<'PY' 2>/dev/null
import json, urllib.request
d = json.load(urllib.request.urlopen("http://127.0.0.1:8080/api/house", timeout=5))
print(sum(e.get("admitted", 0) for e in d["events"] if e.get("event") == "sys-eve"))
PY
}
house_is() { [ "$(house_admitted)" = "$1" ]; }

# render_replay NAME CODE...: a replay folder of an empty doorway and one clean frame per code.
render_replay() {
  local dir=$REPLAY.$1; shift
  rm -rf "$dir"; mkdir -p "$dir"
  "$PY" - "$dir" "$@" <<'PY'
import sys
import numpy as np
from PIL import Image
from gate.sim.render import compose
out, codes = sys.argv[1], sys.argv[2:]
rng = np.random.default_rng(1)
n = 0
def save(img):
    global n
    Image.fromarray(img).save(f"{out}/{n:04d}.png"); n += 1
for code in codes:
    save(compose(code, "clean", symbology="code128", rng=rng))   # zxing-cpp writes it; segno (QR) is an extra
    for _ in range(3):
        save(compose(None, "empty", rng=rng))
if not codes:
    save(compose(None, "empty", rng=rng))
PY
  chown -R gate:gate "$dir"
}
# use_replay NAME: point the installed replay folder at a rendered one (as an operator would copy images in),
# with gate-scan stopped first: a gate still looping over the old folder's file names would otherwise read the
# new images under them and scan them itself (its T5 admission before the relay section's start, say).
use_replay() { systemctl stop gate-scan; rm -rf "$REPLAY"; cp -a "$REPLAY.$1" "$REPLAY"; }
relay_last() { grep -E ' GPIO24 [01]$' "$STATE/mock-pins.log" 2>/dev/null | tail -1 | awk '{print $3}'; }
relay_went_high_since() { awk -v t="$1" '$2 == "GPIO24" && $3 == "1" && $1 >= t {f=1} END {exit !f}' "$STATE/mock-pins.log"; }
dropin() {   # dropin UNIT NAME TEXT: a test-only drop-in, removed by clear_dropins
  mkdir -p "/run/systemd/system/$1.d"; printf '%s\n' "$3" > "/run/systemd/system/$1.d/$2.conf"
}
clear_dropins() { rm -rf /run/systemd/system/gate-scan.service.d; systemctl daemon-reload; systemctl reset-failed gate-scan 2>/dev/null || true; }

echo "checks.sh $MODE on $(uname -m), $(. /etc/os-release; echo "$PRETTY_NAME"), PID 1: $(cat /proc/1/comm)"

# --------------------------------------------------------------------------------------
section "install (scripts/install-pi --role both)"
df_before=$(df --output=used -k / | tail -1)
t=$SECONDS
"$SRC/scripts/install-pi" --role both --gates door-a ${GATE_WHEELS:+--wheels "$GATE_WHEELS"} > /root/install.log 2>&1; rc=$?
figure install_seconds $((SECONDS - t))
check "install-pi exits 0" [ $rc = 0 ]
[ $rc = 0 ] || { tail -30 /root/install.log; exit 1; }
check "install-pi says this is not a Pi" grep -q "NOT A RASPBERRY PI" /root/install.log
check "install-pi says the pins are mock pins" grep -q "gpiozero's mock pins" /root/install.log
grep '^!!' /root/install.log
check "the drop-in says: no camera hardware, replay source" \
  grep -q "no camera hardware: replay source $REPLAY" /etc/systemd/system/gate-scan.service.d/no-hardware.conf
check "systemctl status shows the drop-in" bash -c "systemctl status gate-scan --no-pager 2>&1 | grep -q no-hardware.conf"
check "mosquitto runs with the installer's config (TLS, users, ACL, queues)" bash -c \
  "systemctl is-active -q mosquitto && grep -q '^allow_anonymous false' /etc/mosquitto/conf.d/gate.conf \
   && grep -q '^max_queued_messages' /etc/mosquitto/conf.d/gate.conf && grep -q '^autosave_interval' /etc/mosquitto/conf.d/gate.conf"
check "gate and gate-house units enabled" bash -c "systemctl is-enabled -q gate-scan gate-house"
df_after=$(df --output=used -k / | tail -1)
figure footprint_opt_gate_mb "$(du -sm /opt/gate | cut -f1)"
figure footprint_install_delta_mb $(((df_after - df_before) / 1024))
figure footprint_apt_packages_mb "$(dpkg-query -W -f='${Installed-Size}\n' python3 python3-venv python3-numpy \
  python3-pil libzbar0 mosquitto libpython3.11-stdlib libpython3.11-minimal python3.11 python3.11-minimal \
  libpython3.11 2>/dev/null | awk '{s+=$1} END {printf "%d", s/1024}')"

# --------------------------------------------------------------------------------------
section "configure as an operator (gate.toml, tickets)"
# The broker as the README tells an operator: TLS on 8883 with the venue CA, the gate's own user.
install -m 0640 -g gate /etc/mosquitto/gate/users/door-a.password /etc/gate/mqtt-password
awk '/^\[mqtt\]/{skip=1; next} /^\[/{skip=0} !skip' /etc/gate/gate.toml > /etc/gate/gate.toml.new
printf '[mqtt]\nhost = "localhost"\nport = 8883\ntls = true\nca_file = "/etc/gate/venue-ca.crt"\nusername = "door-a"\npassword_file = "/etc/gate/mqtt-password"\n' >> /etc/gate/gate.toml.new
mv /etc/gate/gate.toml.new /etc/gate/gate.toml; chown root:gate /etc/gate/gate.toml
sed -i -e "s/^events = .*/events = [\"$EVENT\"]/" \
       -e 's/^relay_mode = .*/relay_mode = "hold"/' \
       -e 's/^passage_pin = /# passage_pin = /' \
       -e 's/^passage_timeout_s = .*/passage_timeout_s = 30.0/' /etc/gate/gate.toml
sed -i -e "s/^capacity = .*/capacity = { \"$EVENT\" = 100 }/" -e 's/^listen = .*/listen = "127.0.0.1:8080"/' /etc/gate/house.toml
check "gate config check gate.toml" "$GATE" config check /etc/gate/gate.toml
check "gate config check house.toml" "$GATE" config check /etc/gate/house.toml
{ echo "ticket_id,code,event,holder,seat,zone,tags,status,valid_from,valid_until"
  for i in $(seq 1 12); do echo "T$i,SYS-CODE-$i,$EVENT,Holder $i,A$i,stalls,,valid,,"; done
  echo "T99,SYS-CODE-99,$EVENT,Revoked,Z9,stalls,,revoked,,"; } > /var/tmp/tickets.csv
check "gate tickets import (as the gate user)" runuser -u gate -- "$GATE" tickets import -c /etc/gate/gate.toml /var/tmp/tickets.csv
render_replay first SYS-CODE-1 SYS-CODE-2 SYS-CODE-99
render_replay second SYS-CODE-3 SYS-CODE-4
render_replay relay SYS-CODE-5
render_replay down SYS-CODE-6 SYS-CODE-7 SYS-CODE-8
render_replay more SYS-CODE-9 SYS-CODE-10 SYS-CODE-11 SYS-CODE-12

if [ "$MODE" = full ]; then
  section "install-pi again (after the operator's edits)"
  sums() { sha256sum /etc/gate/gate.toml /etc/gate/house.toml /etc/mosquitto/gate/users/door-a.password \
             /etc/systemd/system/gate-scan.service /etc/systemd/system/gate-scan.service.d/no-hardware.conf; }
  before=$(sums)
  t=$SECONDS
  "$SRC/scripts/install-pi" --role both --gates door-a ${GATE_WHEELS:+--wheels "$GATE_WHEELS"} > /root/install2.log 2>&1; rc=$?
  figure reinstall_seconds $((SECONDS - t))
  expect "install-pi again exits 0" "$rc" 0
  check "... keeps the configs, the gate's broker password, the unit and the drop-in" [ "$before" = "$(sums)" ]
  check "... and installs no unit again" bash -c "! grep -q 'install -m 0644 .*systemd' /root/install2.log"
fi

# --------------------------------------------------------------------------------------
section "gate doctor in the booted system"
runuser -u gate -- "$GATE" doctor -c /etc/gate/gate.toml > /root/doctor.log 2>&1; rc=$?
sed 's/^/   | /' /root/doctor.log
check "doctor exits 1 (not ready: no camera here)" [ $rc = 1 ]
check "doctor: camera absent, and how to fix it" grep -q "^FAIL camera .*apt install python3-picamera2" /root/doctor.log
check "doctor: no GPIO, and how to fix it" grep -q "^FAIL gpio .*python3-lgpio" /root/doctor.log
check "doctor: the broker answers (TLS, user door-a)" grep -q "^OK   broker" /root/doctor.log
grep -v '^username\|^password_file' /etc/gate/gate.toml > /var/tmp/anonymous.toml; chmod 644 /var/tmp/anonymous.toml
runuser -u gate -- "$GATE" doctor -c /var/tmp/anonymous.toml > /root/doctor-anon.log 2>&1
grep "broker" /root/doctor-anon.log | sed 's/^/   | /'
check "doctor: without its user the broker refuses the gate" grep -q "^FAIL broker" /root/doctor-anon.log
check "doctor: 13 tickets" grep -q "^OK   tickets  13 tickets" /root/doctor.log
check "doctor: storage writable by the gate user" grep -q "^OK   storage" /root/doctor.log
check "doctor: says what stands in for the hardware" grep -q "no-hardware.conf" /root/doctor.log

# --------------------------------------------------------------------------------------
section "start: READY after the first frame"
check "gate-house starts (READY)" systemctl start gate-house
use_replay first
t_ms=$(ms_now); since=$(now)
systemctl start gate-scan; rc=$?
ready_ms=$(( $(ms_now) - t_ms ))
check "systemctl start gate-scan returns 0" [ $rc = 0 ]
figure ready_ms "$ready_ms"
st=$(prop gate-scan ExecMainStartTimestampMonotonic); ac=$(prop gate-scan ActiveEnterTimestampMonotonic)
figure ready_after_exec_ms $(( (ac - st) / 1000 ))
check "active (running) when start returns" [ "$(prop gate-scan ActiveState)/$(prop gate-scan SubState)" = active/running ]
# READY=1 is sent after the first frame's verdicts; the first frame shows SYS-CODE-1.
check "the first frame's verdict is in the journal" wait_for 5 journal_has gate-scan "$since" "ADMITTED  ok  T1  "
check "the gate says where its start-up went" wait_for 5 journal_has gate-scan "$since" "ready: first frame decided"
journalctl --no-pager -q -u gate-scan --since "@$since" | grep "ready: first frame decided" | sed 's/^/   | /'
pid=$(prop gate-scan MainPID)
check "runs as user gate" [ "$(stat -c %U /proc/$pid)" = gate ]
groups=$(awk '/^Groups:/{for (i = 2; i <= NF; i++) print $i}' /proc/$pid/status | xargs -r -n1 getent group | cut -d: -f1 | sort | xargs)
echo "   groups of the process: $groups"
for g in gpio video i2c; do check "in group $g" bash -c "[[ ' $groups ' == *' $g '* ]]"; done
check "state directory /var/lib/gate owned by gate" [ "$(stat -c %U:%G $STATE)" = gate:gate ]
check "ticket store and outbox in the state directory" test -f $STATE/tickets.db -a -f $STATE/outbox.db
check "house counts the two valid tickets" wait_for 20 house_is 2
check "the revoked one was refused" wait_for 5 journal_has gate-scan "$since" "REJECTED  revoked  T99"

section "no READY before a frame: systemctl start waits"
# Catch the new process before it has read a frame and stop it there: the unit must stay
# "activating" and systemctl start must keep waiting until the frame loop runs again.
systemctl stop gate-scan
systemctl start gate-scan & starter=$!
pid=0
for _ in $(seq 400); do pid=$(prop gate-scan MainPID); [ "$pid" != 0 ] && break; sleep 0.01; done
kill -STOP "$pid"
sleep $((3 * SCALE))
expect "stopped before its first frame: still activating" "$(prop gate-scan ActiveState)/$(prop gate-scan SubState)" activating/start
check "... and systemctl start still waiting" kill -0 "$starter"
kill -CONT "$pid"
wait "$starter"; rc=$?
expect "resumed: systemctl start returns 0, active" "$rc/$(prop gate-scan ActiveState)" 0/active

# --------------------------------------------------------------------------------------
section "watchdog: a frame loop that stops is killed and restarted"
use_replay second
systemctl restart gate-scan
n0=$(prop gate-scan NRestarts); pid=$(prop gate-scan MainPID); since=$(now)
kill -STOP "$pid"
echo "   SIGSTOP to $pid"
t=$SECONDS
check "the journal says watchdog" wait_for 40 journal_has gate-scan "$since" "atchdog"
check "restarted with a new process" wait_for 60 bash -c \
  "[ \"\$(systemctl show -P NRestarts gate-scan)\" -gt $n0 ] && [ \"\$(systemctl show -P MainPID gate-scan)\" != $pid ] \
   && [ \"\$(systemctl show -P SubState gate-scan)\" = running ]"
figure watchdog_restart_s $((SECONDS - t))
journalctl --no-pager -q -u gate-scan --since "@$since" | grep -i "watchdog\|abort\|dump" | head -4 | sed 's/^/   | /'
check "house counts the second replay too (4)" wait_for 30 house_is 4

# --------------------------------------------------------------------------------------
if [ "$MODE" = arm64 ]; then
  section "a minute of scanning: memory"
  use_replay more
  systemctl restart gate-scan
  check "house counts the third replay (8)" wait_for 60 house_is 8
  for t in 20 40 60; do   # does it keep growing? (samples, then the figure at 60 s)
    sleep 20; echo "   gate-scan after ${t} s: $(awk '/^VmRSS:|^RssAnon:|^RssFile:/{printf "%s %.1f MB  ", $1, $2/1024}' /proc/$(prop gate-scan MainPID)/status)"
  done
  for u in gate-scan gate-house; do
    pid=$(prop $u MainPID)
    figure "rss_${u}_mb" "$(awk '/^VmRSS:/{printf "%.1f", $2/1024}' /proc/$pid/status)"
  done
  # What the gate's memory is made of, and anchors for its start-up on this machine: the interpreter
  # alone, and the imports no gate can do without (numpy, the decoder, gpiozero), timed the same way.
  pid=$(prop gate-scan MainPID)
  figure rss_gate-scan_anon_mb "$(awk '/^RssAnon:/{printf "%.1f", $2/1024}' /proc/$pid/status)"
  figure rss_gate-scan_file_mb "$(awk '/^RssFile:/{printf "%.1f", $2/1024}' /proc/$pid/status)"
  # The biggest resident mappings: the heap, anonymous memory (arenas, Python's own, stacks) and libraries.
  awk '/^[0-9a-f]+-[0-9a-f]+ /{name = (NF >= 6 ? $6 : "[anonymous]")} /^Rss:/{rss[name] += $2}
       END {for (n in rss) printf "%8.1f MB %s\n", rss[n] / 1024, n}' /proc/$pid/smaps | sort -rn | head -14 | sed 's/^/   | /'
  figure cryptography_from "$($PY -c 'import cryptography; print(("apt" if "/dist-packages/" in cryptography.__file__ else "wheel") + "-" + cryptography.__version__)')"
  # And a minute later: still growing, or settled?
  sleep 60; echo "   gate-scan after 120 s: $(awk '/^VmRSS:|^RssAnon:|^RssFile:/{printf "%s %.1f MB  ", $1, $2/1024}' /proc/$pid/status)"
  awk '/^[0-9a-f]+-[0-9a-f]+ /{name = (NF >= 6 ? $6 : "[anonymous]")} /^Rss:/{rss[name] += $2}
       END {for (n in rss) printf "%8.1f MB %s\n", rss[n] / 1024, n}' /proc/$pid/smaps | sort -rn | head -2 | sed 's/^/   | /'
  t=$(ms_now); $PY -c pass; figure python_start_ms $(( $(ms_now) - t ))
  t=$(ms_now); $PY -c 'import numpy, zxingcpp, gpiozero, sqlite3'; figure python_floor_imports_ms $(( $(ms_now) - t ))
  t=$(ms_now); $PY -c 'import gate.cli.main, gate.scanner'; figure gate_imports_ms $(( $(ms_now) - t ))
  echo; echo "$FAILED check(s) failed"; [ $FAILED = 0 ]; exit
fi

# --------------------------------------------------------------------------------------
section "stop: the relay is left low"
use_replay relay
t0=$(date +%s.%N); since=$(now)
systemctl restart gate-scan
check "the gate admits T5" wait_for 20 journal_has gate-scan "$since" "ADMITTED  ok  T5  "
failed_before=$FAILED
check "an admission holds the relay (mock pin GPIO24 high)" wait_for 20 relay_went_high_since "$t0"
if [ $FAILED != $failed_before ]; then
  echo "   what the gate and its pins said (t0 $t0):"
  journalctl --no-pager -q -u gate-scan --since "@$since" | tail -25 | sed 's/^/   | /'
  tail -12 $STATE/mock-pins.log | sed 's/^/   | /'
fi
expect "... and it is still held (hold mode, 30 s timeout)" "$(relay_last)" 1
since=$(now)
systemctl stop gate-scan
expect "after systemctl stop, GPIO24 is low" "$(relay_last)" 0
check "... and released" bash -c "tail -1 <(grep ' GPIO24 ' $STATE/mock-pins.log) | grep -q released"
check "a clean stop on SIGTERM" journal_has gate-scan "$since" "stopping (signal 15)"
check "the unit is inactive, not failed" [ "$(prop gate-scan ActiveState)" = inactive ]
tail -4 $STATE/mock-pins.log | sed 's/^/   | /'

# --------------------------------------------------------------------------------------
section "house restarts and keeps its broker session"
check "house counts 5" wait_for 20 house_is 5
systemctl stop gate-house
use_replay down
systemctl start gate-scan
since=$(now)
check "the gate scans 3 while the house is down" wait_for 30 bash -c \
  "[ \$(journalctl --no-pager -q -u gate-scan --since @$since -o cat | grep -cE 'ADMITTED  ok  T[678]  ') -ge 3 ]"
sleep 2
systemctl restart mosquitto
check "mosquitto restarted (its persistence keeps the house's session)" systemctl is-active -q mosquitto
systemctl start gate-house
check "house counts those 3 once it is back (8)" wait_for 30 house_is 8
check "the house's session was present" journal_has gate-house "$since" "session present: True"
systemctl restart gate-house
sleep 3
check "after another house restart: still 8 (counted once)" wait_for 10 house_is 8
systemctl stop gate-scan

# --------------------------------------------------------------------------------------
section "a unit that keeps failing stops at its start limit"
dropin gate-scan.service zz-broken "[Service]
ExecStart=
ExecStart=$GATE scan -c /etc/gate/gate.toml --source replay:/nonexistent
RestartSec=300ms"
systemctl daemon-reload
since=$(now)
systemctl start gate-scan 2>/dev/null
wait_for 60 bash -c "[ \"\$(systemctl show -P ActiveState gate-scan)\" = failed ]"
n=$(prop gate-scan NRestarts)
sleep 3
expect "gate-scan gives up: failed, and stays failed" "$(prop gate-scan ActiveState)/$(prop gate-scan NRestarts)" "failed/$n"
check "... after StartLimitBurst starts" [ "$n" -ge 9 ]
check "the journal says so" journal_has gate-scan "$since" "Start request repeated too quickly"
clear_dropins

echo; echo "$FAILED check(s) failed"
[ $FAILED = 0 ]
