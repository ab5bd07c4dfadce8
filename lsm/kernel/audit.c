// SPDX-License-Identifier: GPL-2.0-only
/*
 * IPE with decisions made in Rust: audit records 1420, 1421, 1422 and
 * 1404, with the fields and order of security/ipe/audit.c of Linux 6.12,
 * Copyright (C) 2020-2024 Microsoft Corporation.
 */
#include <linux/slab.h>
#include <linux/audit.h>
#include <linux/types.h>
#include <crypto/hash.h>

#include "ipe.h"

#define ACTSTR(x) ((x) == IPE_ACTION_ALLOW ? "ALLOW" : "DENY")

#define IPE_AUDIT_HASH_ALG "sha256"

#define AUDIT_POLICY_LOAD_FMT "policy_name=\"%s\" policy_version=%hu.%hu.%hu "\
			      "policy_digest=" IPE_AUDIT_HASH_ALG ":"
#define AUDIT_OLD_ACTIVE_POLICY_FMT "old_active_pol_name=\"%s\" "\
				    "old_active_pol_version=%hu.%hu.%hu "\
				    "old_policy_digest=" IPE_AUDIT_HASH_ALG ":"
#define AUDIT_OLD_ACTIVE_POLICY_NULL_FMT "old_active_pol_name=? "\
					 "old_active_pol_version=? "\
					 "old_policy_digest=?"
#define AUDIT_NEW_ACTIVE_POLICY_FMT "new_active_pol_name=\"%s\" "\
				    "new_active_pol_version=%hu.%hu.%hu "\
				    "new_policy_digest=" IPE_AUDIT_HASH_ALG ":"

static const char *const audit_op_names[__IPE_OP_MAX + 1] = {
	"EXECUTE",
	"FIRMWARE",
	"KMODULE",
	"KEXEC_IMAGE",
	"KEXEC_INITRAMFS",
	"POLICY",
	"X509_CERT",
	"UNKNOWN",
};

static const char *const audit_hook_names[__IPE_HOOK_MAX] = {
	"BPRM_CHECK",
	"MMAP",
	"MPROTECT",
	"KERNEL_READ",
	"KERNEL_LOAD",
};

static const char *const audit_prop_names[__IPE_PROP_MAX] = {
	"boot_verified=FALSE",
	"boot_verified=TRUE",
	"dmverity_roothash=",
	"dmverity_signature=FALSE",
	"dmverity_signature=TRUE",
	"fsverity_digest=",
	"fsverity_signature=FALSE",
	"fsverity_signature=TRUE",
};

static const char *op_name(u32 op)
{
	return op < ARRAY_SIZE(audit_op_names) ? audit_op_names[op] : "UNKNOWN";
}

/* Writes ` rule="op=… props… action=…"` for rule @rule of @pol. */
static void audit_rule(struct audit_buffer *ab, const struct ipe_policy *pol,
		       u32 rule)
{
	struct ipe_rust_property_info prop;
	struct ipe_rust_rule_info info;
	u32 i;

	if (ipe_rust_rule_info(pol->parsed, rule, &info)) {
		audit_log_format(ab, " rule=?");
		return;
	}

	audit_log_format(ab, " rule=\"op=%s ", op_name(info.op));

	for (i = 0; i < info.property_count; i++) {
		if (ipe_rust_rule_property(pol->parsed, rule, i, &prop) ||
		    prop.type >= __IPE_PROP_MAX)
			break;

		audit_log_format(ab, "%s", audit_prop_names[prop.type]);
		if (prop.type == IPE_PROP_DMV_ROOTHASH ||
		    prop.type == IPE_PROP_FSV_DIGEST) {
			audit_log_n_untrustedstring(ab, prop.alg, prop.alg_len);
			audit_log_format(ab, ":");
			audit_log_n_hex(ab, prop.digest, prop.digest_len);
		}
		audit_log_format(ab, " ");
	}

	audit_log_format(ab, "action=%s\"", ACTSTR(info.action));
}

/* Writes AUDIT_IPE_ACCESS for a denial, or for any decision with success_audit on. */
void ipe_audit_match(const struct ipe_eval_ctx *ctx,
		     const struct ipe_policy *pol,
		     const struct ipe_rust_decision *decision)
{
	const char *op = op_name(ctx->op);
	char comm[sizeof(current->comm)];
	struct audit_buffer *ab;
	struct inode *inode;

	if (decision->action != IPE_ACTION_DENY && !READ_ONCE(success_audit))
		return;

	ab = audit_log_start(audit_context(), GFP_ATOMIC | __GFP_NOWARN,
			     AUDIT_IPE_ACCESS);
	if (!ab)
		return;

	audit_log_format(ab, "ipe_op=%s ipe_hook=%s enforcing=%d pid=%d comm=",
			 op, audit_hook_names[ctx->hook], READ_ONCE(enforce),
			 task_tgid_nr(current));
	audit_log_untrustedstring(ab, get_task_comm(comm, current));

	if (ctx->file) {
		audit_log_d_path(ab, " path=", &ctx->file->f_path);
		inode = file_inode(ctx->file);
		if (inode) {
			audit_log_format(ab, " dev=");
			audit_log_untrustedstring(ab, inode->i_sb->s_id);
			audit_log_format(ab, " ino=%lu", inode->i_ino);
		} else {
			audit_log_format(ab, " dev=? ino=?");
		}
	} else {
		audit_log_format(ab, " path=? dev=? ino=?");
	}

	if (decision->match == IPE_MATCH_RULE)
		audit_rule(ab, pol, decision->rule);
	else if (decision->match == IPE_MATCH_TABLE)
		audit_log_format(ab, " rule=\"DEFAULT op=%s action=%s\"", op,
				 ACTSTR(decision->action));
	else
		audit_log_format(ab, " rule=\"DEFAULT action=%s\"",
				 ACTSTR(decision->action));

	audit_log_end(ab);
}

/* Writes name, version and the SHA-256 of the PKCS#7 message of @p. */
static void audit_policy(struct audit_buffer *ab, const char *audit_format,
			 const struct ipe_policy *p)
{
	SHASH_DESC_ON_STACK(desc, tfm);
	struct crypto_shash *tfm;
	u8 *digest = NULL;

	tfm = crypto_alloc_shash(IPE_AUDIT_HASH_ALG, 0, 0);
	if (IS_ERR(tfm))
		return;

	desc->tfm = tfm;

	digest = kzalloc(crypto_shash_digestsize(tfm), GFP_KERNEL);
	if (!digest)
		goto out;

	if (crypto_shash_init(desc))
		goto out;

	if (crypto_shash_update(desc, p->pkcs7, p->pkcs7len))
		goto out;

	if (crypto_shash_final(desc, digest))
		goto out;

	audit_log_format(ab, audit_format, p->name, p->version.major,
			 p->version.minor, p->version.rev);
	audit_log_n_hex(ab, digest, crypto_shash_digestsize(tfm));

out:
	kfree(digest);
	crypto_free_shash(tfm);
}

void ipe_audit_policy_activation(const struct ipe_policy *op,
				 const struct ipe_policy *np)
{
	struct audit_buffer *ab;

	ab = audit_log_start(audit_context(), GFP_KERNEL,
			     AUDIT_IPE_CONFIG_CHANGE);
	if (!ab)
		return;

	if (op) {
		audit_policy(ab, AUDIT_OLD_ACTIVE_POLICY_FMT, op);
		audit_log_format(ab, " ");
	} else {
		/* With no boot policy there is no previously active policy. */
		audit_log_format(ab, AUDIT_OLD_ACTIVE_POLICY_NULL_FMT);
		audit_log_format(ab, " ");
	}
	audit_policy(ab, AUDIT_NEW_ACTIVE_POLICY_FMT, np);
	audit_log_format(ab, " auid=%u ses=%u lsm=ipe res=1",
			 from_kuid(&init_user_ns, audit_get_loginuid(current)),
			 audit_get_sessionid(current));

	audit_log_end(ab);
}

void ipe_audit_policy_load(const struct ipe_policy *p)
{
	struct audit_buffer *ab;

	ab = audit_log_start(audit_context(), GFP_KERNEL,
			     AUDIT_IPE_POLICY_LOAD);
	if (!ab)
		return;

	audit_policy(ab, AUDIT_POLICY_LOAD_FMT, p);
	audit_log_format(ab, " auid=%u ses=%u lsm=ipe res=1",
			 from_kuid(&init_user_ns, audit_get_loginuid(current)),
			 audit_get_sessionid(current));

	audit_log_end(ab);
}

/*
 * Writes AUDIT_MAC_STATUS for an enforce change. Like the C IPE of 6.12 it
 * starts a record and logs the fields through a second one.
 */
void ipe_audit_enforce(bool new_enforce, bool old_enforce)
{
	struct audit_buffer *ab;

	ab = audit_log_start(audit_context(), GFP_KERNEL, AUDIT_MAC_STATUS);
	if (!ab)
		return;

	audit_log(audit_context(), GFP_KERNEL, AUDIT_MAC_STATUS,
		  "enforcing=%d old_enforcing=%d auid=%u ses=%u"
		  " enabled=1 old-enabled=1 lsm=ipe res=1",
		  new_enforce, old_enforce,
		  from_kuid(&init_user_ns, audit_get_loginuid(current)),
		  audit_get_sessionid(current));

	audit_log_end(ab);
}
