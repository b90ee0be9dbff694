"""systemd: the unit rendered from templates/systemd/, then daemon-reload and restart."""


def unit_path(name):
    """Where the unit is installed."""
    return f"/etc/systemd/system/fabship-{name}.service"


def install_unit(staged_unit, name):
    """Copy the release's rendered unit into place and reload systemd.

    Mode 0600: a unit may hold secrets (Environment=...), and only systemd reads it.
    """
    return ("sh", "-c", 'install -m 0600 "$1" "$2" && systemctl daemon-reload', "fabship",
            staged_unit, unit_path(name))


def restart(name):
    """Restart the unit."""
    return ("systemctl", "restart", f"fabship-{name}.service")


def stop(name):
    """Stop the unit."""
    return ("systemctl", "stop", f"fabship-{name}.service")
