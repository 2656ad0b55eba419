import os
import subprocess

disk_image = os.environ.get("DISK_IMAGE", "/tmp/disk.qcow2")


def create_target(keep_state=False):
    target = create_machine(
        f"/nix/store/abc123-run-target-vm -drive file={disk_image},if=virtio",
        name="target",
        keep_machine_state=keep_state,
    )
    return target


def partition(machine, table: str = "gpt") -> None:
    machine.succeed(
        f"parted --script /dev/vda -- mklabel {table}",
        "parted --script /dev/vda -- mkpart ESP fat32 1MiB 512MiB",
        "parted --script /dev/vda -- mkpart primary 512MiB 100%",
        "udevadm settle",
    )


installer.start()
installer.wait_for_unit("multi-user.target")

with subtest("partition and format"):
    partition(installer)
    installer.succeed("mkfs.vfat -n BOOT /dev/vda1")
    installer.succeed("mkfs.ext4 -L nixos /dev/vda2")

with subtest("install"):
    installer.succeed("mount /dev/vda2 /mnt && mkdir -p /mnt/boot")
    installer.succeed("mount /dev/vda1 /mnt/boot")
    installer.succeed("nixos-install --no-root-passwd --system /nix/store/xyz-system", timeout=1800)
    installer.shutdown()

target = create_target()
target.start()
version = target.succeed("nixos-version").strip()
if version is None or version == "":
    raise Exception("the installed system did not report a version")
target.shutdown()

subprocess.run(["qemu-img", "info", disk_image], check=True)
