/*
 * The bcc PMDA's performance metrics domain (registered to bcc in PCP's pmdas/pmcd/domain list)
 */
#define BCC 149
