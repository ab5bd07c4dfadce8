/*
 * Tamper test probe: performs one operation that IPE governs and prints its
 * outcome as one line, "ok", "ok exit=N" or "errno=NAME", for the test
 * script of the tamper test image (manifests/firewall-test/overlay).
 *
 * Built by builder/tests/tamper.rs with `gcc -static`, so it runs on the
 * appliance's root without a loader. Usage: probe COMMAND ARGS...
 *   noop                      exit 0
 *   exec PATH [ARG...]        fork, execve PATH, wait; prints the exit status
 *   mmap-exec PATH            mmap the file's first page with PROT_EXEC
 *   mprotect-exec PATH        mmap it PROT_READ, then mprotect to PROT_EXEC
 *   anon-exec                 mmap anonymous memory with PROT_EXEC
 *   memfd-exec PATH           copy PATH into a memfd and fexecve it with "noop"
 *   finit-module PATH         finit_module(2) on the file
 *   init-module PATH          init_module(2) with the file's bytes
 *   write FILE SOURCE         write SOURCE's bytes to FILE in one write(2)
 *   write-text FILE TEXT      write TEXT to FILE in one write(2)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static int fail(int error)
{
	const char *name = strerrorname_np(error);
	if (name)
		printf("errno=%s\n", name);
	else
		printf("errno=%d\n", error);
	return 1;
}

static int usage(void)
{
	fprintf(stderr, "usage: probe noop | exec PATH [ARG...] | mmap-exec PATH | mprotect-exec PATH | anon-exec | "
			"memfd-exec PATH | finit-module PATH | init-module PATH | write FILE SOURCE | write-text FILE TEXT\n");
	return 2;
}

/* Reads the whole file into a malloc'd buffer; returns NULL with errno set. */
static char *read_file(const char *path, size_t *length)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	struct stat st;
	if (fstat(fd, &st) < 0) {
		int error = errno;
		close(fd);
		errno = error;
		return NULL;
	}
	char *buffer = malloc(st.st_size + 1);
	size_t done = 0;
	while (buffer && done < (size_t)st.st_size) {
		ssize_t n = read(fd, buffer + done, st.st_size - done);
		if (n <= 0) {
			int error = n < 0 ? errno : EIO;
			free(buffer);
			close(fd);
			errno = error;
			return NULL;
		}
		done += n;
	}
	close(fd);
	*length = done;
	return buffer;
}

/*
 * Runs execve(path, argv) in a child. The child reports an execve failure
 * through a close-on-exec pipe, so "errno=" always means execve failed and
 * "ok exit=N" means the new program ran (or the kernel killed it).
 */
static int run_child(int exec_fd, const char *path, char **argv)
{
	int report[2];
	if (pipe2(report, O_CLOEXEC) < 0)
		return fail(errno);
	pid_t pid = fork();
	if (pid < 0)
		return fail(errno);
	if (pid == 0) {
		close(report[0]);
		extern char **environ;
		if (exec_fd >= 0)
			fexecve(exec_fd, argv, environ);
		else
			execve(path, argv, environ);
		int error = errno;
		(void)!write(report[1], &error, sizeof error);
		_exit(127);
	}
	close(report[1]);
	int error = 0;
	ssize_t n = read(report[0], &error, sizeof error);
	close(report[0]);
	int status = 0;
	waitpid(pid, &status, 0);
	if (n == sizeof error)
		return fail(error);
	if (WIFSIGNALED(status))
		printf("ok signal=%d\n", WTERMSIG(status));
	else
		printf("ok exit=%d\n", WEXITSTATUS(status));
	return 0;
}

static int map_exec(const char *path, int via_mprotect)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return fail(errno);
	void *address = mmap(NULL, 4096, via_mprotect ? PROT_READ : PROT_READ | PROT_EXEC, MAP_PRIVATE, fd, 0);
	if (address == MAP_FAILED)
		return fail(errno);
	if (via_mprotect && mprotect(address, 4096, PROT_READ | PROT_EXEC) < 0)
		return fail(errno);
	puts("ok");
	return 0;
}

static int write_once(const char *path, const char *data, size_t length)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return fail(errno);
	ssize_t written = write(fd, data, length);
	if (written < 0)
		return fail(errno);
	if ((size_t)written != length) {
		printf("short-write=%zd/%zu\n", written, length);
		return 1;
	}
	puts("ok");
	return 0;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IONBF, 0);
	if (argc < 2)
		return usage();
	const char *command = argv[1];

	if (strcmp(command, "noop") == 0)
		return 0;
	if (strcmp(command, "exec") == 0 && argc >= 3)
		return run_child(-1, argv[2], argv + 2);
	if (strcmp(command, "mmap-exec") == 0 && argc == 3)
		return map_exec(argv[2], 0);
	if (strcmp(command, "mprotect-exec") == 0 && argc == 3)
		return map_exec(argv[2], 1);
	if (strcmp(command, "anon-exec") == 0 && argc == 2) {
		void *address = mmap(NULL, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (address == MAP_FAILED)
			return fail(errno);
		puts("ok");
		return 0;
	}
	if (strcmp(command, "memfd-exec") == 0 && argc == 3) {
		size_t length;
		char *content = read_file(argv[2], &length);
		if (!content)
			return fail(errno);
		int fd = memfd_create("tamper-probe", MFD_CLOEXEC);
		if (fd < 0)
			return fail(errno);
		if (write(fd, content, length) != (ssize_t)length)
			return fail(errno);
		char *child_argv[] = { "probe", "noop", NULL };
		return run_child(fd, NULL, child_argv);
	}
	if (strcmp(command, "finit-module") == 0 && argc == 3) {
		int fd = open(argv[2], O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			return fail(errno);
		if (syscall(SYS_finit_module, fd, "", 0) < 0)
			return fail(errno);
		puts("ok");
		return 0;
	}
	if (strcmp(command, "init-module") == 0 && argc == 3) {
		size_t length;
		char *content = read_file(argv[2], &length);
		if (!content)
			return fail(errno);
		if (syscall(SYS_init_module, content, length, "") < 0)
			return fail(errno);
		puts("ok");
		return 0;
	}
	if (strcmp(command, "write") == 0 && argc == 4) {
		size_t length;
		char *content = read_file(argv[3], &length);
		if (!content)
			return fail(errno);
		return write_once(argv[2], content, length);
	}
	if (strcmp(command, "write-text") == 0 && argc == 4)
		return write_once(argv[2], argv[3], strlen(argv[3]));
	return usage();
}
