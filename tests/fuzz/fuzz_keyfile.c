/*
 * fuzz_keyfile.c - libFuzzer target for keyfile_open (chunker/crypto.c): the
 * input is written as a key file and opened with the fixed passphrase of
 * fuzz_common.h.
 *
 * keyfile_open takes the scrypt cost from the file (up to log2n 22, r 32,
 * p 16: seconds and gigabytes per try, by design for real files).  So that
 * the fuzzer spends its time on parsing rather than in scrypt, inputs
 * whose header asks for log2n > 12, r > 8 or p > 2 are rejected before the
 * call; the range checks above those values are simple comparisons that
 * the unit tests cover.
 */
#include "fuzz_common.h"
#include "util.h"

#include <errno.h>

#define MAX_LOG2N 12
#define MAX_R 8
#define MAX_P 2

static char path[300];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	snprintf(path, sizeof(path), "%s/tresor.key", fuzz_tmpdir());
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct store_keys k, zero;
	int ret;

	if (size >= 20 && get_le32(data + 16) > MAX_LOG2N)
		return -1;	/* not added to the corpus */
	if (size >= 24 && get_le32(data + 20) > MAX_R)
		return -1;
	if (size >= 28 && get_le32(data + 24) > MAX_P)
		return -1;
	fuzz_write_file(path, data, size);
	memset(&k, 0xcc, sizeof(k));
	ret = keyfile_open(path, FUZZ_PASS, FUZZ_PASS_LEN, &k);
	FUZZ_SAY("keyfile_open = %d\n", ret);
	switch (ret) {
	case 0:
		/* Only an authentic file opens: touch the keys. */
		memset(&zero, 0, sizeof(zero));
		if (!memcmp(&k, &zero, sizeof(k)))
			abort();
		break;
	case -EKEYREJECTED:
	case -EBADMSG:
	case -EPROTONOSUPPORT:
	case -ENOMEM:
		break;
	default:
		fprintf(stderr, "keyfile_open: unexpected %d\n", ret);
		abort();
	}
	return 0;
}
