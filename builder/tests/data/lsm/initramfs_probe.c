/*
 * Initramfs probe: runs as /init (PID 1) in place of the appliance's init,
 * for the initramfs case of builder/tests/lsm_boot.rs. Built there with
 * `gcc -static`, because the initramfs has no loader.
 *
 * It execs itself and maps itself with PROT_EXEC from the initramfs, first
 * under the kernel's boot policy (only boot_verified files may execute),
 * then again after loading /policy.p7s through new_policy and activating
 * it. That release policy has no boot_verified rule, so the second round
 * is denied. Each step prints one line, "initramfs-case STEP: ok" or
 * "initramfs-case STEP: errno=NAME". Then it prints the IPE audit records
 * (types 1420-1422) of /dev/kmsg, the ready line that ends
 * `applbuild run --test`, and powers off.
 *
 * Run as `/init child` (the exec step), it exits 0 at once.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/klog.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define IPE_DIR "/sys/kernel/security/ipe"
/* klogctl(2) action that sets the console log level, as `dmesg -n`. */
#define SYSLOG_ACTION_CONSOLE_LEVEL 8

static void report(const char *step, int error)
{
	if (error == 0) {
		printf("initramfs-case %s: ok\n", step);
		return;
	}
	const char *name = strerrorname_np(error);
	if (name)
		printf("initramfs-case %s: errno=%s\n", step, name);
	else
		printf("initramfs-case %s: errno=%d\n", step, error);
}

/* Mounts one file system and reports it, so a missing mount shows up as a
 * differing line instead of as later failures. */
static void mount_or_report(const char *type, const char *target)
{
	char step[64];
	snprintf(step, sizeof(step), "mount-%s", type);
	mkdir(target, 0755);
	report(step, mount(type, target, type, 0, NULL) == 0 ? 0 : errno);
}

/* Forks and execs `/init child`; returns 0 when the exec ran and the child
 * exited 0, otherwise the exec's errno (the child's exit status). */
static int exec_self(void)
{
	fflush(stdout);
	pid_t pid = fork();
	if (pid < 0)
		return errno;
	if (pid == 0) {
		char *const argv[] = { "/init", "child", NULL };
		execv("/init", argv);
		_exit(errno);
	}
	int status;
	if (waitpid(pid, &status, 0) < 0)
		return errno;
	if (!WIFEXITED(status))
		return EINTR;
	return WEXITSTATUS(status);
}

/* Maps the first page of /init with PROT_EXEC, or with PROT_READ followed
 * by mprotect(PROT_EXEC) when `use_mprotect` is set; returns 0 or errno. */
static int map_self_exec(int use_mprotect)
{
	int fd = open("/init", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno;
	int protection = use_mprotect ? PROT_READ : PROT_READ | PROT_EXEC;
	void *page = mmap(NULL, 4096, protection, MAP_PRIVATE, fd, 0);
	int error = page == MAP_FAILED ? errno : 0;
	close(fd);
	if (error == 0 && use_mprotect && mprotect(page, 4096, PROT_READ | PROT_EXEC) < 0)
		error = errno;
	if (page != MAP_FAILED)
		munmap(page, 4096);
	return error;
}

static void run_round(const char *round)
{
	char step[64];
	snprintf(step, sizeof(step), "exec-%s", round);
	report(step, exec_self());
	snprintf(step, sizeof(step), "mmap-exec-%s", round);
	report(step, map_self_exec(0));
	snprintf(step, sizeof(step), "mprotect-exec-%s", round);
	report(step, map_self_exec(1));
}

/* Writes `length` bytes to `path` in one write(2), because IPE parses each
 * write to new_policy as a whole policy; returns 0 or errno. */
static int write_once(const char *path, const void *bytes, size_t length)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return errno;
	ssize_t written = write(fd, bytes, length);
	int error = written < 0 ? errno : 0;
	close(fd);
	if (error == 0 && (size_t)written != length)
		error = EIO;
	return error;
}

static int load_release_policy(void)
{
	int fd = open("/policy.p7s", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno;
	struct stat st;
	if (fstat(fd, &st) < 0) {
		int error = errno;
		close(fd);
		return error;
	}
	char *bytes = malloc(st.st_size);
	if (!bytes) {
		close(fd);
		return ENOMEM;
	}
	ssize_t length = read(fd, bytes, st.st_size);
	int error = length < 0 ? errno : 0;
	close(fd);
	if (error == 0 && length != st.st_size)
		error = EIO;
	if (error == 0)
		error = write_once(IPE_DIR "/new_policy", bytes, length);
	free(bytes);
	return error;
}

/* Copies the value of `applbuild.policy=` from /proc/cmdline into `name`;
 * returns 0 or errno (ENOENT when the parameter is missing). */
static int policy_name(char *name, size_t size)
{
	char cmdline[4096];
	int fd = open("/proc/cmdline", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno;
	ssize_t length = read(fd, cmdline, sizeof(cmdline) - 1);
	int error = length < 0 ? errno : 0;
	close(fd);
	if (error)
		return error;
	cmdline[length] = '\0';
	const char *key = "applbuild.policy=";
	for (char *word = strtok(cmdline, " \n"); word; word = strtok(NULL, " \n")) {
		if (strncmp(word, key, strlen(key)) == 0) {
			snprintf(name, size, "%s", word + strlen(key));
			return 0;
		}
	}
	return ENOENT;
}

static int activate_release_policy(void)
{
	char name[256];
	int error = policy_name(name, sizeof(name));
	if (error)
		return error;
	char path[512];
	snprintf(path, sizeof(path), IPE_DIR "/policies/%s/active", name);
	return write_once(path, "1", 1);
}

/* Prints each kernel log record with an IPE audit record (types 1420 to
 * 1422) from "type=" on, as the matrix script of lsm_boot.rs does. */
static void print_audit_records(void)
{
	int fd = open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0) {
		report("read-kmsg", errno);
		return;
	}
	char record[8192];
	for (;;) {
		ssize_t length = read(fd, record, sizeof(record) - 1);
		if (length < 0 && errno == EPIPE)
			continue; /* Records were overwritten; read on from the oldest left. */
		if (length <= 0)
			break;
		record[length] = '\0';
		char *message = strchr(record, ';');
		char *type = message ? strstr(message, "type=142") : NULL;
		if (!type || (type[8] != '0' && type[8] != '1' && type[8] != '2') || type[9] != ' ')
			continue;
		type[strcspn(type, "\n")] = '\0';
		printf("initramfs-case audit: %s\n", type);
	}
	close(fd);
}

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "child") == 0)
		return 0;
	setvbuf(stdout, NULL, _IONBF, 0);

	/* Keep kernel messages, audit records among them, off the console so
	 * they do not split the probe's lines. /dev/kmsg still has them. */
	klogctl(SYSLOG_ACTION_CONSOLE_LEVEL, NULL, 1);
	mount_or_report("proc", "/proc");
	mount_or_report("sysfs", "/sys");
	mount_or_report("devtmpfs", "/dev");
	mount_or_report("securityfs", "/sys/kernel/security");
	/* Audit records reach the kernel log through printk_ratelimit() while
	 * no audit daemon runs; 0 turns the limit off. */
	write_once("/proc/sys/kernel/printk_ratelimit", "0", 1);

	run_round("boot-policy");
	report("load-release-policy", load_release_policy());
	report("activate-release-policy", activate_release_policy());
	run_round("release-policy");

	/* kauditd logs the records asynchronously. */
	sleep(1);
	print_audit_records();
	printf("appliance ready: probe done\n");
	sync();
	reboot(RB_POWER_OFF);
	report("power-off", errno);
	for (;;)
		pause();
}
