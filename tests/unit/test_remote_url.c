/*
 * test_remote_url.c - remote_url_same (remote/remote.c): one repository
 * spelled two ways is one remote (issue 13: a daemon config naming the
 * origin of a lazy recovery again must not start a second copy of it).
 */
#include "../../remote/remote.h"
#include "check.h"

int main(void)
{
	CHECK(remote_url_same("/mnt/usb/tresor", "/mnt/usb/tresor/"));
	CHECK(remote_url_same("/mnt/usb//tresor", "file:///mnt/usb/tresor"));
	CHECK(remote_url_same("file://localhost/mnt/x", "/mnt/x"));
	CHECK(remote_url_same("/", "file:///"));
	CHECK(remote_url_same("sftp://u@host:23/backup", "sftp://u@host/backup/"));
	CHECK(remote_url_same("sftp://u@HOST.example/b", "sftp://u@host.example/b"));
	CHECK(remote_url_same("sftp://u@[::1]:23/b", "sftp://u@[::1]/b"));
	CHECK(remote_url_same("https://dav.example:443/t/", "https://dav.example/t"));
	CHECK(remote_url_same("s3://bucket/prefix/", "s3://bucket/prefix"));
	CHECK(remote_url_same("s3://bucket/", "s3://bucket"));
	CHECK(!remote_url_same("sftp://u@host:2222/b", "sftp://u@host/b"));
	CHECK(!remote_url_same("sftp://U@host/b", "sftp://u@host/b"));
	CHECK(!remote_url_same("sftp://u@[::1]:2222/b", "sftp://u@[::1]/b"));
	CHECK(!remote_url_same("https://dav.example:8443/t", "https://dav.example/t"));
	CHECK(!remote_url_same("s3://bucket/a", "s3://bucket/A"));
	CHECK(!remote_url_same("/mnt/a", "/mnt/a/b"));
	CHECK(!remote_url_same("s3://bucket/p", "https://bucket/p"));
	return check_failures ? 1 : 0;
}
