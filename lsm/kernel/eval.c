// SPDX-License-Identifier: GPL-2.0-only
/*
 * IPE with decisions made in Rust: turns a hook's event into the flat
 * facts the Rust evaluator reads, and applies its decision. Follows
 * security/ipe/eval.c of Linux 6.12,
 * Copyright (C) 2020-2024 Microsoft Corporation.
 */
#include <linux/fs.h>
#include <linux/types.h>
#include <linux/file.h>
#include <linux/sched.h>
#include <linux/rcupdate.h>
#include <linux/moduleparam.h>
#include <linux/fsverity.h>
#include <crypto/hash_info.h>

#include "ipe.h"

struct ipe_policy __rcu *ipe_active_policy;
bool success_audit;
bool enforce = true;

#define IPE_PROVIDERS							\
	((IS_ENABLED(CONFIG_IPE_RUST_PROP_DM_VERITY) ?			\
	  IPE_PROVIDER_DM_VERITY : 0) |					\
	 (IS_ENABLED(CONFIG_IPE_RUST_PROP_DM_VERITY_SIGNATURE) ?	\
	  IPE_PROVIDER_DM_VERITY_SIG : 0) |				\
	 (IS_ENABLED(CONFIG_IPE_RUST_PROP_FS_VERITY) ?			\
	  IPE_PROVIDER_FS_VERITY : 0) |					\
	 (IS_ENABLED(CONFIG_IPE_RUST_PROP_FS_VERITY_BUILTIN_SIG) ?	\
	  IPE_PROVIDER_FS_VERITY_SIG : 0))

#ifdef CONFIG_IPE_RUST_PROP_DM_VERITY
/* Must run under rcu_read_lock(): the root hash is RCU-protected. */
static void build_bdev_facts(struct ipe_rust_event *ev, const struct inode *ino)
{
	const struct ipe_digest *root_hash;
	const struct ipe_bdev *blob;

	if (!ino->i_sb->s_bdev)
		return;

	blob = ipe_bdev(ino->i_sb->s_bdev);
	ev->has_bdev = true;
#ifdef CONFIG_IPE_RUST_PROP_DM_VERITY_SIGNATURE
	ev->dmv_signed = blob->dm_verity_signed;
#endif
	root_hash = rcu_dereference(blob->root_hash);
	if (root_hash) {
		ev->dmv_alg = root_hash->alg;
		ev->dmv_alg_len = strlen(root_hash->alg);
		ev->dmv_digest = root_hash->digest;
		ev->dmv_digest_len = root_hash->digest_len;
	}
}
#else
static void build_bdev_facts(struct ipe_rust_event *ev, const struct inode *ino)
{
}
#endif

#ifdef CONFIG_IPE_RUST_PROP_FS_VERITY
static void build_fsverity_facts(struct ipe_rust_event *ev,
				 const struct inode *ino,
				 u8 digest[FS_VERITY_MAX_DIGEST_SIZE])
{
	enum hash_algo alg;

	if (!IS_VERITY(ino))
		return;

	ev->fsv_enabled = true;
#ifdef CONFIG_IPE_RUST_PROP_FS_VERITY_BUILTIN_SIG
	ev->fsv_signed = ipe_inode(ino)->fs_verity_signed;
#endif
	if (!fsverity_get_digest((struct inode *)ino, digest, NULL, &alg))
		return;
	ev->fsv_alg = hash_algo_name[alg];
	ev->fsv_alg_len = strlen(hash_algo_name[alg]);
	ev->fsv_digest = digest;
	ev->fsv_digest_len = hash_digest_size[alg];
}
#else
static void build_fsverity_facts(struct ipe_rust_event *ev,
				 const struct inode *ino, u8 *digest)
{
}
#endif

/*
 * Decides @ctx against the active policy. Returns -EACCES when the
 * decision is DENY and IPE enforces, 0 otherwise (also with no policy).
 */
int ipe_evaluate_event(const struct ipe_eval_ctx *ctx)
{
	u8 fsv_digest[FS_VERITY_MAX_DIGEST_SIZE];
	struct ipe_rust_decision decision = { 0 };
	struct ipe_rust_event ev = {
		.op = ctx->op,
		.hook = ctx->hook,
		.providers = IPE_PROVIDERS,
	};
	const struct ipe_policy *pol;
	const struct inode *ino;
	int rc;

	rcu_read_lock();

	pol = rcu_dereference(ipe_active_policy);
	if (!pol) {
		rcu_read_unlock();
		return 0;
	}

	if (ctx->file) {
		ev.has_file = true;
		ev.initramfs = ipe_sb(ctx->file->f_path.mnt->mnt_sb)->initramfs;
		ino = d_real_inode(ctx->file->f_path.dentry);
		if (ino) {
			ev.has_inode = true;
			build_bdev_facts(&ev, ino);
			build_fsverity_facts(&ev, ino, fsv_digest);
		}
	}

	rc = ipe_rust_evaluate(pol->parsed, &ev, &decision);
	if (rc) {
		/* An unmapped operation in a policy without a global default. */
		WARN(1, "no default rule set for unknown op, ALLOW it");
		decision.action = IPE_ACTION_ALLOW;
		decision.match = IPE_MATCH_GLOBAL;
	}

	ipe_audit_match(ctx, pol, &decision);
	rcu_read_unlock();

	if (decision.action == IPE_ACTION_DENY && READ_ONCE(enforce))
		return -EACCES;

	return 0;
}

/* The parameters are ipe.enforce and ipe.success_audit, as with the C IPE. */
#ifdef KBUILD_MODNAME
#undef KBUILD_MODNAME
#define KBUILD_MODNAME "ipe"
#endif

module_param(success_audit, bool, 0400);
MODULE_PARM_DESC(success_audit, "Start IPE with success auditing enabled");
module_param(enforce, bool, 0400);
MODULE_PARM_DESC(enforce, "Start IPE in enforce or permissive mode");
