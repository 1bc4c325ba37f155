# Sourced by the scripts that debootstrap a Debian root: the archive to build it from is the one
# this machine's own apt is configured with (DEBIAN_MIRROR overrides). Nothing else is assumed.

# host_debian_mirror SUITE: the first enabled "deb" URI for SUITE in /etc/apt (one-line and deb822 forms)
host_debian_mirror() {
  local suite=$1 f
  {
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
      [ -f "$f" ] || continue
      # deb [options] URI SUITE COMPONENTS...
      sed -e 's/#.*//' -e 's/\[[^]]*\]//' "$f" | awk -v s="$suite" '$1 == "deb" && $3 == s { print $2 }'
    done
    for f in /etc/apt/sources.list.d/*.sources; do
      [ -f "$f" ] || continue
      # deb822 stanzas: Types, URIs, Suites (blank line between stanzas); Enabled: no skips one
      awk -v s="$suite" '
        function flush() { if (deb && on && has) for (i = 1; i <= n; i++) print u[i]; deb = 0; on = 1; has = 0; n = 0 }
        BEGIN { on = 1 }
        /^[[:space:]]*#/ { next }
        /^[[:space:]]*$/ { flush(); next }
        tolower($1) == "types:" { for (i = 2; i <= NF; i++) if ($i == "deb") deb = 1 }
        tolower($1) == "enabled:" { on = (tolower($2) != "no") }
        tolower($1) == "uris:" { for (i = 2; i <= NF; i++) u[++n] = $i }
        tolower($1) == "suites:" { for (i = 2; i <= NF; i++) if ($i == s) has = 1 }
        END { flush() }' "$f"
    done
  } | head -n 1
}

# debian_mirror SUITE: DEBIAN_MIRROR, else the host's; fails with a clear message when there is none
debian_mirror() {
  local m=${DEBIAN_MIRROR:-$(host_debian_mirror "$1")}
  if [ -z "$m" ]; then
    echo "no Debian archive for '$1' in this machine's apt sources (/etc/apt); set DEBIAN_MIRROR" >&2
    return 1
  fi
  printf '%s\n' "$m"
}
