// SPDX-License-Identifier: GPL-2.0-only
/*
 * IPE with decisions made in Rust: policy life cycle. Verifies PKCS#7,
 * hands the text to the Rust parser, applies the version rules and
 * publishes the active policy with RCU. Follows security/ipe/policy.c of
 * Linux 6.12, Copyright (C) 2020-2024 Microsoft Corporation.
 */
#include <linux/errno.h>
#include <linux/slab.h>
#include <linux/verification.h>

#include "ipe.h"

/* Serialises writers of ipe_active_policy. */
DEFINE_MUTEX(ipe_policy_lock);

static inline u64 ver_to_u64(const struct ipe_policy *p)
{
	return ((u64)p->version.major << 32) |
	       ((u64)p->version.minor << 16) |
	       (u64)p->version.rev;
}

/* Frees @p and removes its securityfs node; the caller waits for RCU readers. */
void ipe_free_policy(struct ipe_policy *p)
{
	if (IS_ERR_OR_NULL(p))
		return;

	ipe_del_policyfs_node(p);
	ipe_rust_policy_free(p->parsed);
	kfree(p->name);
	/* p->text points into p->pkcs7 when the policy was signed. */
	if (!p->pkcs7)
		kfree(p->text);
	kfree(p->pkcs7);
	kfree(p);
}

static int set_pkcs7_data(void *ctx, const void *data, size_t len,
			  size_t asn1hdrlen __always_unused)
{
	struct ipe_policy *p = ctx;

	p->text = (const char *)data;
	p->textlen = len;

	return 0;
}

static int verify_policy_signature(struct ipe_policy *p)
{
	int rc;

	rc = verify_pkcs7_signature(NULL, 0, p->pkcs7, p->pkcs7len,
#ifdef CONFIG_IPE_RUST_POLICY_SIG_SECONDARY_KEYRING
				    VERIFY_USE_SECONDARY_KEYRING,
#else
				    NULL,
#endif
				    VERIFYING_UNSPECIFIED_SIGNATURE,
				    set_pkcs7_data, p);
#ifdef CONFIG_IPE_RUST_POLICY_SIG_PLATFORM_KEYRING
	if (rc == -ENOKEY || rc == -EKEYREJECTED)
		rc = verify_pkcs7_signature(NULL, 0, p->pkcs7, p->pkcs7len,
					    VERIFY_USE_PLATFORM_KEYRING,
					    VERIFYING_UNSPECIFIED_SIGNATURE,
					    set_pkcs7_data, p);
#endif
	return rc;
}

static int parse_policy(struct ipe_policy *p)
{
	struct ipe_rust_policy_info info = { 0 };
	int rc;

	rc = ipe_rust_policy_parse(p->text, p->textlen, &p->parsed, &info);
	if (rc)
		return rc;

	p->name = kmemdup_nul(info.name, info.name_len, GFP_KERNEL);
	if (!p->name)
		return -ENOMEM;
	p->version.major = info.version[0];
	p->version.minor = info.version[1];
	p->version.rev = info.version[2];

	return 0;
}

/*
 * Creates a policy from plain @text (the boot policy) or from a signed
 * @pkcs7 message that embeds the text. The policy is not activated.
 */
struct ipe_policy *ipe_new_policy(const char *text, size_t textlen,
				  const char *pkcs7, size_t pkcs7len)
{
	struct ipe_policy *new;
	int rc;

	new = kzalloc(sizeof(*new), GFP_KERNEL);
	if (!new)
		return ERR_PTR(-ENOMEM);

	if (!text) {
		new->pkcs7len = pkcs7len;
		new->pkcs7 = kmemdup(pkcs7, pkcs7len, GFP_KERNEL);
		if (!new->pkcs7) {
			rc = -ENOMEM;
			goto err;
		}

		rc = verify_policy_signature(new);
		if (rc)
			goto err;
	} else {
		new->textlen = textlen;
		new->text = kmemdup_nul(text, textlen, GFP_KERNEL);
		if (!new->text) {
			rc = -ENOMEM;
			goto err;
		}
	}

	rc = parse_policy(new);
	if (rc)
		goto err;

	return new;
err:
	ipe_free_policy(new);
	return ERR_PTR(rc);
}

/*
 * Replaces the policy under @root with a newer version of the same name,
 * keeping it active if it was. Returns -ESTALE unless the version is
 * strictly higher, -EINVAL on a name mismatch.
 */
int ipe_update_policy(struct inode *root, const char *text, size_t textlen,
		      const char *pkcs7, size_t pkcs7len)
{
	struct ipe_policy *old, *ap, *new;
	int rc = 0;

	old = (struct ipe_policy *)root->i_private;
	if (!old)
		return -ENOENT;

	new = ipe_new_policy(text, textlen, pkcs7, pkcs7len);
	if (IS_ERR(new))
		return PTR_ERR(new);

	if (strcmp(new->name, old->name)) {
		rc = -EINVAL;
		goto err;
	}

	if (ver_to_u64(old) >= ver_to_u64(new)) {
		rc = -ESTALE;
		goto err;
	}

	root->i_private = new;
	swap(new->policyfs, old->policyfs);
	ipe_audit_policy_load(new);

	mutex_lock(&ipe_policy_lock);
	ap = rcu_dereference_protected(ipe_active_policy,
				       lockdep_is_held(&ipe_policy_lock));
	if (old == ap) {
		rcu_assign_pointer(ipe_active_policy, new);
		mutex_unlock(&ipe_policy_lock);
		ipe_audit_policy_activation(old, new);
	} else {
		mutex_unlock(&ipe_policy_lock);
	}
	synchronize_rcu();
	ipe_free_policy(old);

	return 0;
err:
	ipe_free_policy(new);
	return rc;
}

/*
 * Makes @p the active policy. Returns -EINVAL when the active policy,
 * whatever its name, has a higher version.
 */
int ipe_set_active_pol(const struct ipe_policy *p)
{
	struct ipe_policy *ap;

	mutex_lock(&ipe_policy_lock);

	ap = rcu_dereference_protected(ipe_active_policy,
				       lockdep_is_held(&ipe_policy_lock));
	if (ap == p) {
		mutex_unlock(&ipe_policy_lock);
		return 0;
	}
	if (ap && ver_to_u64(ap) > ver_to_u64(p)) {
		mutex_unlock(&ipe_policy_lock);
		return -EINVAL;
	}

	rcu_assign_pointer(ipe_active_policy, p);
	ipe_audit_policy_activation(ap, p);
	mutex_unlock(&ipe_policy_lock);

	return 0;
}
