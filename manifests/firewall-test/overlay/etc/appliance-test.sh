#!/bin/sh
# Tamper test script of the test-only image (boards/qemu-x86_64-test.toml).
# rcS runs it before the ready line. It tries what IPE must stop on a running
# appliance and prints one machine-readable line per attempt:
#   tamper-case <case> <name>: <result>      result: ok, ok exit=N, errno=NAME
#   tamper-audit <case> <name>: type=<record> ...   the audit records it caused
# and "tamper-done" at the end. builder/tests/tamper.rs asserts on these lines.
# The probe programs and signed policies come from the overlay that
# builder/tests/tamper.rs generates; /dev/vdb is the unverified ext4 disk that
# it attaches. The script changes IPE state (policy update, enforce), so it
# must never be in a release image.

exec > /dev/console 2>&1

probe=/usr/libexec/tamper/probe
data=/usr/share/tamper
ipe=/sys/kernel/security/ipe
loader=/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2
work=/tmp/tamper

if [ ! -x "$probe" ]; then
	echo "tamper-skip: $probe is missing; build the image with builder/tests/tamper.rs"
	exit 0
fi

policy_name=
for word in $(cat /proc/cmdline); do
	case "$word" in
	applbuild.policy=*) policy_name=${word#applbuild.policy=} ;;
	esac
done
release_policy=$ipe/policies/$policy_name

# Kernel messages stay off the console so they cannot split result lines;
# the audit records are read back from the kernel log instead. Audit records
# reach the log through printk_ratelimit(), which would drop some of them.
dmesg -n 1
echo 0 > /proc/sys/kernel/printk_ratelimit

# Runs "$@", prints its last output line as the result of case $1 named $2,
# then the IPE and MAC audit records (types 1400-1499) it caused.
report() {
	case_number=$1
	name=$2
	shift 2
	dmesg -c > /dev/null
	result=$("$@" 2>&1 | tail -n 1)
	echo "tamper-case $case_number $name: $result"
	dmesg | grep -o 'type=14[0-9][0-9] .*' | while read -r line; do
		echo "tamper-audit $case_number $name: $line"
	done
}

# Writable places to copy code to. Each is mounted without noexec, so only
# IPE can stop execution from it (/tmp itself is noexec).
mkdir -p "$work/tmpfs" "$work/state" "$work/usb"
mount -t tmpfs -o mode=0755 tmpfs "$work/tmpfs"
for file in "$probe" /usr/libexec/tamper/hello /usr/lib/tamper/libtamper.so; do
	cp "$file" "$work/tmpfs/"
done
printf '#!/bin/sh\necho unverified script ran\n' > "$work/tmpfs/script.sh"
chmod 755 "$work/tmpfs/script.sh"
# IPE decides on a module or firmware file when the kernel reads it, before
# anything parses it, so random bytes serve as both.
head -c 8192 /dev/urandom > "$work/tmpfs/tamper.ko"
mkdir -p "$work/tmpfs/firmware"
head -c 4096 /dev/urandom > "$work/tmpfs/firmware/tamper.fw"

state_device=
for uevent in /sys/class/block/*/uevent; do
	if grep -qx 'PARTNAME=state' "$uevent"; then
		state_device=$(sed -n 's/^DEVNAME=//p' "$uevent")
	fi
done
state_ready=no
if [ -n "$state_device" ] && mount -t ext4 "/dev/$state_device" "$work/state"; then
	cp "$probe" /usr/lib/tamper/libtamper.so "$work/tmpfs/tamper.ko" "$work/state/" && state_ready=yes
fi
echo "tamper-setup state-partition: ${state_device:-none} mounted=$state_ready"

usb_ready=no
if [ -b /dev/vdb ] && mount -t ext4 -o ro /dev/vdb "$work/usb"; then
	usb_ready=yes
fi
echo "tamper-setup unverified-disk: mounted=$usb_ready"

# Controls: code on the verified root runs and maps.
report 0 root-exec "$probe" exec /usr/bin/busybox true
report 0 root-mmap-exec "$probe" mmap-exec /usr/lib/x86_64-linux-gnu/libc.so.6

# Case 6: execution of a copied binary.
report 6 tmpfs-exec "$probe" exec "$work/tmpfs/probe" noop
if [ "$state_ready" = yes ]; then
	report 6 state-exec "$probe" exec "$work/state/probe" noop
fi
if [ "$usb_ready" = yes ]; then
	report 6 usb-exec "$probe" exec "$work/usb/probe" noop
fi
report 6 memfd-exec "$probe" memfd-exec "$probe"
report 6 tmpfs-script-exec "$probe" exec "$work/tmpfs/script.sh"
# Out of scope: an interpreter on the verified root reading an unverified
# script. IPE in Linux 6.12 checks only the interpreter's exec.
report 6 tmpfs-script-via-sh "$probe" exec /bin/sh "$work/tmpfs/script.sh"

# Case 7: executable mappings of unverified files and of anonymous memory.
report 7 tmpfs-mmap-exec "$probe" mmap-exec "$work/tmpfs/libtamper.so"
report 7 tmpfs-mprotect-exec "$probe" mprotect-exec "$work/tmpfs/libtamper.so"
if [ "$state_ready" = yes ]; then
	report 7 state-mmap-exec "$probe" mmap-exec "$work/state/libtamper.so"
fi
if [ "$usb_ready" = yes ]; then
	report 7 usb-mmap-exec "$probe" mmap-exec "$work/usb/libtamper.so"
	report 7 usb-mprotect-exec "$probe" mprotect-exec "$work/usb/libtamper.so"
fi
report 7 anon-mmap-exec "$probe" anon-exec
# The verified loader asked to run an unverified program maps it itself.
report 7 loader-exec "$probe" exec "$loader" "$work/tmpfs/hello"

# Case 8: kernel modules and firmware from unverified media. finit_module
# reads the file through kernel_read_file (IPE hook KERNEL_READ). IPE checks
# init_module, which passes a buffer, in kernel_load_data (KERNEL_LOAD)
# with no file.
report 8 tmpfs-finit-module "$probe" finit-module "$work/tmpfs/tamper.ko"
if [ "$state_ready" = yes ]; then
	report 8 state-finit-module "$probe" finit-module "$work/state/tamper.ko"
fi
if [ "$usb_ready" = yes ]; then
	report 8 usb-finit-module "$probe" finit-module "$work/usb/tamper.ko"
	report 8 usb-init-module "$probe" init-module "$work/usb/tamper.ko"
fi

# Firmware: the loader looks for <path parameter>/<name> first, then in
# /lib/firmware, which the root does not have. A denied read leaves the
# loader's "loading <file> failed with error -13" line in the kernel log,
# which is printed as the case's "-log" result.
firmware_path=/sys/module/firmware_class/parameters/path
firmware_trigger=/sys/devices/virtual/misc/test_firmware/trigger_request
# Runs a firmware request for tamper.fw from folder $2 as case 8 named $1.
request_firmware() {
	name=$1
	folder=$2
	if ! "$probe" write-text "$firmware_path" "$folder" > /dev/null; then
		echo "tamper-case 8 $name: setup failed (cannot write $firmware_path)"
		return
	fi
	report 8 "$name" "$probe" write-text "$firmware_trigger" tamper.fw
	echo "tamper-case 8 $name-log: $(dmesg | grep -o "loading $folder/tamper.fw failed with error -[0-9]*" | tail -n 1)"
}
if [ -e "$firmware_path" ] && [ -e "$firmware_trigger" ]; then
	request_firmware tmpfs-firmware "$work/tmpfs/firmware"
	if [ "$usb_ready" = yes ]; then
		request_firmware usb-firmware "$work/usb"
	fi
else
	echo "tamper-case 8 tmpfs-firmware: unsupported (no $firmware_path or $firmware_trigger)"
fi

# Case 9: run-time policy changes. The release policy's version equals the
# release; policy-higher.p7s is a later version signed with the release key.
report 9 update-equal "$probe" write "$release_policy/update" "$data/policy-equal.p7s"
report 9 update-lower "$probe" write "$release_policy/update" "$data/policy-lower.p7s"
report 9 update-foreign-key "$probe" write "$release_policy/update" "$data/policy-foreign.p7s"
report 9 new-foreign-key "$probe" write "$ipe/new_policy" "$data/other-foreign.p7s"
report 9 new-unsigned "$probe" write "$ipe/new_policy" "$data/policy-higher.pol"
report 9 new-same-name "$probe" write "$ipe/new_policy" "$data/policy-higher.p7s"
report 9 new-other-lower "$probe" write "$ipe/new_policy" "$data/other-lower.p7s"
report 9 activate-other-lower "$probe" write-text "$ipe/policies/tamper-other/active" 1
report 9 delete-other-lower "$probe" write-text "$ipe/policies/tamper-other/delete" 1
report 9 update-higher "$probe" write "$release_policy/update" "$data/policy-higher.p7s"
echo "tamper-case 9 release-policy-state: version=$(cat "$release_policy/version") active=$(cat "$release_policy/active")"
report 9 after-update-root-exec "$probe" exec /usr/bin/busybox true
report 9 after-update-tmpfs-exec "$probe" exec "$work/tmpfs/probe" noop

# Case 10: switching enforcement off at run time, then back to the boot value.
enforce_at_boot=$(cat "$ipe/enforce")
echo "tamper-case 10 enforce-at-boot: $enforce_at_boot"
report 10 enforce-write-0 "$probe" write-text "$ipe/enforce" 0
echo "tamper-case 10 enforce-after-write: $(cat "$ipe/enforce")"
report 10 tmpfs-exec-after "$probe" exec "$work/tmpfs/probe" noop
report 10 enforce-restore "$probe" write-text "$ipe/enforce" "$enforce_at_boot"

dmesg -n 7
echo "tamper-done"
