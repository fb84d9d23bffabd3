/*
 * bench/procs.c: N live processes that each sent a few bytes over loopback TCP and UDP, for
 * the per-process scale figures (bench/netproc.py). A C program because forked children
 * of it stay small (about 100 KiB each: page tables, kernel stack); Python's would copy
 * pages as soon as they touch an object.
 *
 *   procs N    forks N children; each sends one UDP datagram (127.0.0.1) and one byte on
 *              a TCP connection it inherits, then sleeps. The parent receives both, says
 *              "ready N" on stdout once every child has sent, and on end of stdin kills
 *              and reaps them all.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static void die(const char *what)
{
	fprintf(stderr, "procs: %s: %s\n", what, strerror(errno));
	exit(1);
}

static int bound(int type, struct sockaddr_in *a)
{
	socklen_t len = sizeof(*a);
	int s = socket(AF_INET, type, 0);

	memset(a, 0, sizeof(*a));
	a->sin_family = AF_INET;
	a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (s < 0 || bind(s, (struct sockaddr *)a, sizeof(*a)) || getsockname(s, (struct sockaddr *)a, &len))
		die("socket");
	return s;
}

/* Reads what is there without waiting; returns the bytes read. */
static long drain(int s)
{
	char buf[65536];
	long got = 0;
	ssize_t n;

	while ((n = recv(s, buf, sizeof(buf), MSG_DONTWAIT)) > 0)
		got += n;
	return got;
}

int main(int argc, char **argv)
{
	struct sockaddr_in ua, ta;
	long n, i, tcp_got = 0;
	int us, ls, tc, ts;
	pid_t *pids;
	char c;

	if (argc != 2 || (n = atol(argv[1])) <= 0) {
		fprintf(stderr, "usage: procs N\n");
		return 2;
	}
	pids = calloc(n, sizeof(*pids));
	us = bound(SOCK_DGRAM, &ua);
	ls = bound(SOCK_STREAM, &ta);
	if (listen(ls, 1))
		die("listen");
	tc = socket(AF_INET, SOCK_STREAM, 0);
	if (tc < 0 || connect(tc, (struct sockaddr *)&ta, sizeof(ta)))
		die("connect");
	ts = accept(ls, NULL, NULL);
	if (ts < 0)
		die("accept");
	for (i = 0; i < n; i++) {
		pids[i] = fork();
		if (pids[i] < 0)
			die("fork");
		if (pids[i] == 0) {
			if (sendto(us, "u", 1, 0, (struct sockaddr *)&ua, sizeof(ua)) != 1 || send(tc, "t", 1, 0) != 1)
				_exit(1);
			for (;;)
				pause();
		}
		tcp_got += drain(ts);
		drain(us);
	}
	/* Every child has sent once its byte arrived (a datagram may be dropped when the
	 * receive buffer is full: the send counted all the same). */
	while (tcp_got < n) {
		char buf[4096];
		ssize_t r = recv(ts, buf, sizeof(buf), 0);

		if (r <= 0)
			die("recv");
		tcp_got += r;
	}
	printf("ready %ld\n", n);
	fflush(stdout);
	while (read(0, &c, 1) > 0)
		;
	for (i = 0; i < n; i++)
		kill(pids[i], SIGKILL);
	for (i = 0; i < n; i++)
		waitpid(pids[i], NULL, 0);
	return 0;
}
