"""Host keys from an EC2 console output, and the per-instance pin file."""
from pathlib import Path

import pytest

from fabship.deploy.errors import DeployError
from fabship.deploy.hostkeys import InstancePins, console_host_keys

SAMPLE = Path(__file__).parent / "data" / "console-output-al2023.txt"
ED25519 = ("ssh-ed25519", "AAAAC3NzaC1lZDI1NTE5AAAAIBVLcKTbnXBavK3Ah0nr244EI/MVMjJ2tJrfvVUd5icb")
ECDSA = ("ecdsa-sha2-nistp256",
         "AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBAl2vZokNRFRqhmrNVl+ucijFvUJGPkyAM2"
         "zdr/BN3f/12Ug7+kPENOE2o6GPf4SMafl0kf210I6zKBqWaEmjWc=")
OTHER = ("ssh-ed25519", "AAAAC3NzaC1lZDI1NTE5AAAAIGEL7RTuRlH1Tr5nyNPZBvSEQq7RvRaReygUpo1WrdiV")
HOST = "root@ip-172-31-5-17.eu-west-1.compute.internal"
BEGIN, END = "-----BEGIN SSH HOST KEY KEYS-----", "-----END SSH HOST KEY KEYS-----"


def block(*keys, prefix=""):
    """A KEYS block as cloud-init prints it, each line behind `prefix`."""
    lines = [BEGIN, *(f"{kind} {data} {HOST}" for kind, data in keys), END]
    return "".join(f"{prefix}{line}\n" for line in lines)


def test_amazon_linux_2023_console_output():
    """The keys cloud-init printed on a real boot."""
    text = SAMPLE.read_text(encoding="utf-8")
    assert "-----BEGIN SSH HOST KEY FINGERPRINTS-----" in text  # the sample is the real shape
    assert console_host_keys(text) == [ECDSA, ED25519]
    assert console_host_keys(text.replace("\n", "\r\n")) == [ECDSA, ED25519]  # serial line ends


def test_no_block_no_keys():
    """Fingerprints, empty output and stray key lines give no keys."""
    text = SAMPLE.read_text(encoding="utf-8")
    before = text[:text.index(BEGIN)]  # fingerprints only: they are not keys
    assert "SHA256:yEwBLr911KItVngbSptC4cYbBEmNtduE8Tm0Z+nYKpE" in before
    assert not console_host_keys(before)
    assert not console_host_keys("") and not console_host_keys(None)
    loose = f"{ED25519[0]} {ED25519[1]} {HOST}\n"  # a key line outside any block
    assert not console_host_keys(loose)


@pytest.mark.parametrize("prefix", ["ec2: ", "[  30.1] cloud-init[812]: ",
                                    "<14>Nov 23 12:00:09 ec2: "])
def test_keys_behind_a_console_prefix(prefix):
    """Console prefixes before the lines do not hide keys."""
    assert console_host_keys("boot\n" + block(ED25519, ECDSA, prefix=prefix)) == [ED25519,
                                                                                   ECDSA]


def test_after_a_reboot_the_last_block_counts():
    """The newest complete block wins."""
    text = block(OTHER) + "[   0.000000] Linux version 6.1.115\n" + block(ED25519, ECDSA)
    assert console_host_keys(text) == [ED25519, ECDSA]
    assert console_host_keys(block(ED25519, ECDSA) + block(OTHER)) == [OTHER]


def test_an_unterminated_block_is_not_trusted():
    """A block cut off before its end counts for nothing."""
    cut = block(ED25519, ECDSA).replace(END + "\n", "")
    assert not console_host_keys(cut)
    assert console_host_keys(block(OTHER) + cut) == [OTHER]  # the earlier complete block


@pytest.mark.parametrize("junk", [
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBVLcKTbnXBavK3Ah0nr244EI/MVMjJ2tJrfvVUd5ic",  # padding
    "ssh-ed25519 QUJD",  # decodes, but to 3 bytes: no key
    "ssh-ed25519 AAAA*not-base64*",
    "ssh-foo " + ED25519[1],  # not a key type
    ED25519[1],  # no key type
])
def test_junk_lines_in_the_block_are_ignored(junk):
    """Only well-formed keys are taken."""
    text = f"{BEGIN}\n{junk} {HOST}\n{ECDSA[0]} {ECDSA[1]} {HOST}\n{END}\n"
    assert console_host_keys(text) == [ECDSA]


def test_pins_are_per_instance(tmp_path):
    """Each instance id has its own keys."""
    pins = InstancePins(tmp_path / ".fabship" / "instance_known_hosts")
    assert pins.keys("i-0123456789abcdef0") == []  # no file yet
    assert pins.pin("i-0123456789abcdef0", [ECDSA, ED25519]) is True
    assert pins.pin("i-0fedcba9876543210", [OTHER]) is True
    assert pins.keys("i-0123456789abcdef0") == [ECDSA, ED25519]
    assert pins.keys("i-0fedcba9876543210") == [OTHER]
    assert pins.keys("i-00000000000000000") == []
    assert pins.path.read_text(encoding="utf-8").splitlines()[0] == (
        f"i-0123456789abcdef0 {ECDSA[0]} {ECDSA[1]}")


def test_a_second_pin_changes_nothing(tmp_path):
    """Pins are written once: first contact wins."""
    pins = InstancePins(tmp_path / "pins")
    assert pins.pin("i-0123456789abcdef0", [ED25519])
    before = pins.path.read_text(encoding="utf-8")
    assert pins.pin("i-0123456789abcdef0", [OTHER, ECDSA]) is False
    assert pins.path.read_text(encoding="utf-8") == before
    assert pins.keys("i-0123456789abcdef0") == [ED25519]


@pytest.mark.parametrize("bad", ["web1", "i-xyz", "I-0123456789ABCDEF0", "", "i-0123 ssh-rsa",
                                 "10.0.0.5"])
def test_only_instance_ids_are_pinned(tmp_path, bad):
    """Anything else is refused, and nothing is written."""
    pins = InstancePins(tmp_path / "pins")
    with pytest.raises(DeployError, match="not an instance id"):
        pins.pin(bad, [ED25519])
    assert not pins.path.exists()


def test_forget_drops_only_the_given_instances(tmp_path):
    """Other instances keep their pins."""
    pins = InstancePins(tmp_path / "pins")
    ids = ["i-0aaaaaaaaaaaaaaaa", "i-0bbbbbbbbbbbbbbbb", "i-0cccccccccccccccc"]
    for instance_id, keys in zip(ids, ([ED25519], [ECDSA, OTHER], [OTHER])):
        pins.pin(instance_id, keys)
    pins.forget(iter([ids[1], "i-0dddddddddddddddd"]))  # a generator, and an unknown id
    assert [pins.keys(i) for i in ids] == [[ED25519], [], [OTHER]]
    pins.forget([])
    assert [pins.keys(i) for i in ids] == [[ED25519], [], [OTHER]]
    assert pins.pin(ids[1], [ED25519]) is True  # a forgotten id may be pinned anew


def test_an_unusable_pin_file_is_a_clear_error(tmp_path):
    """A pin file that is a directory, or not text, names itself; no traceback."""
    folder = tmp_path / "pins"
    folder.mkdir()
    with pytest.raises(DeployError, match=f"cannot read the host key pins in {folder}"):
        InstancePins(folder).keys("i-0123456789abcdef0")
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(DeployError, match="cannot read the host key pins"):
        InstancePins(binary).pin("i-0123456789abcdef0", [("ssh-ed25519", "AAAA")])
