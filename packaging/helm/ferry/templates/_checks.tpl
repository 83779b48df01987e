{{/*
Values ferry's chart cannot honour, refused before anything renders, each
with what to do instead (helm install prints the message). The config map
includes this, so every install and template runs it.
*/}}
{{- define "ferry.checks" -}}
{{- $v := .Values }}
{{- if not (include "ferry.teleportAddress" .) }}
{{- fail "teleport.address is required: the Auth Service (host:3025) or a Proxy (host:443); or set tbot.enabled with tbot.teleportProxyAddress" }}
{{- end }}
{{- if not (include "ferry.identitySecretName" .) }}
{{- fail "teleport.identitySecretName is required: the secret holding ferry's Teleport identity file (or set tbot.enabled to have tbot write it)" }}
{{- end }}
{{- if not $v.fluentd.url }}
{{- fail "fluentd.url is required: the Logstash or Fluentd http input events are POSTed to" }}
{{- end }}
{{- if and (not $v.certManager.enabled) (not $v.fluentd.certificate.secretName) }}
{{- fail "fluentd.certificate.secretName is required: the secret with ca.crt, client.crt and client.key for the receiver (or set certManager.enabled to have cert-manager issue them)" }}
{{- end }}
{{- with $v.eventHandler.namespace }}
{{- if ne . "default" }}
{{- fail (printf "eventHandler.namespace is %q: Teleport's audit log has one namespace, default; remove the value" .) }}
{{- end }}
{{- end }}
{{- if and $v.tls.existingCASecretName (not $v.tls.existingCASecretKeyName) }}
{{- fail "tls.existingCASecretKeyName is required with tls.existingCASecretName: the key of the CA bundle in that secret (e.g. ca.pem)" }}
{{- end }}
{{- if not $v.certManager.enabled }}
{{- range $what := list "annotations" "extraLabels" }}
{{- if (index $v $what).certSecret }}
{{- fail (printf "%s.certSecret applies to the secrets cert-manager writes: set certManager.enabled, or remove it" $what) }}
{{- end }}
{{- end }}
{{- else }}
{{- if and (empty $v.certManager.dnsNames) (empty $v.certManager.ipAddresses) }}
{{- fail "certManager.dnsNames or certManager.ipAddresses is required: the names of the receiver (Logstash, Fluentd) in its server certificate" }}
{{- end }}
{{- if and $v.certManager.namespace (ne $v.certManager.namespace .Release.Namespace) }}
{{- fail (printf "certManager.namespace is %q, the release's is %q: ferry's pod mounts the client certificate's secret, which must be in its own namespace; install the release there or remove the value" $v.certManager.namespace .Release.Namespace) }}
{{- end }}
{{- end }}
{{- if $v.tbot.enabled }}
{{- include "ferry.tbot.checks" . }}
{{- end }}
{{- include "ferry.storage.checks" . }}
{{- end }}

{{/*
Where the state lives: SQLite on the pod's volume, one pod; or PostgreSQL,
shared by every replica, with no volume.
*/}}
{{- define "ferry.storage.checks" -}}
{{- $v := .Values }}
{{- $pg := $v.storage.postgres }}
{{- if $pg.url }}
{{- if not (regexMatch "^postgres(ql)?://" $pg.url) }}
{{- fail "storage.postgres.url must be a postgres:// URL (postgres://USER@HOST:5432/DATABASE?sslmode=verify-full)" }}
{{- end }}
{{- if regexMatch "^postgres(ql)?://[^/?#@:]*:[^/?#@]*@" $pg.url }}
{{- fail "storage.postgres.url holds a password, which ferry would show in its logs: remove it from the URL and name a Secret holding it in storage.postgres.passwordSecret.name" }}
{{- end }}
{{- if or $v.persistentVolumeClaim.enabled $v.persistentVolumeClaim.existingClaim }}
{{- fail "persistentVolumeClaim.enabled and persistentVolumeClaim.existingClaim have no use with storage.postgres.url: the state is in PostgreSQL; remove them" }}
{{- end }}
{{- if lt (int $pg.slots) 1 }}
{{- fail (printf "storage.postgres.slots is %d: at least one pod must export" (int $pg.slots)) }}
{{- end }}
{{- if gt (int $pg.slots) (int $v.replicas) }}
{{- fail (printf "storage.postgres.slots is %d but replicas is %d: each slot needs a pod of its own; run replicas = slots + 1, so that a standby covers a pod that stops" (int $pg.slots) (int $v.replicas)) }}
{{- end }}
{{- if and $pg.passwordSecret.name (not $pg.passwordSecret.key) }}
{{- fail "storage.postgres.passwordSecret.key is required with storage.postgres.passwordSecret.name: the key of the password in that Secret" }}
{{- end }}
{{- else }}
{{- if gt (int $v.replicas) 1 }}
{{- fail (printf "replicas is %d: more than one pod needs storage.postgres.url, where the pods share their state and take turns; SQLite on a volume belongs to one pod" (int $v.replicas)) }}
{{- end }}
{{- if or $pg.passwordSecret.name $pg.tlsSecretName }}
{{- fail "storage.postgres.passwordSecret.name and storage.postgres.tlsSecretName need storage.postgres.url: set it, or remove them" }}
{{- end }}
{{- if gt (int $pg.slots) 1 }}
{{- fail (printf "storage.postgres.slots is %d: pods exporting at once share their state in PostgreSQL; set storage.postgres.url" (int $pg.slots)) }}
{{- end }}
{{- end }}
{{- end }}

{{/* tbot as ferry's chart runs it: one identity output, for ferry. */}}
{{- define "ferry.tbot.checks" -}}
{{- $tbot := .Values.tbot }}
{{- if not $tbot.clusterName }}
{{- fail "tbot.clusterName is required with tbot.enabled: the Teleport cluster's name (tctl status)" }}
{{- end }}
{{- if not (or $tbot.teleportProxyAddress $tbot.teleportAuthAddress) }}
{{- fail "tbot.teleportProxyAddress or tbot.teleportAuthAddress is required with tbot.enabled: where tbot joins (host:443 or host:3025)" }}
{{- end }}
{{- if and $tbot.teleportProxyAddress $tbot.teleportAuthAddress }}
{{- fail "tbot.teleportProxyAddress and tbot.teleportAuthAddress exclude each other: keep one" }}
{{- end }}
{{- if not $tbot.teleportVersionOverride }}
{{- fail "tbot.teleportVersionOverride is required with tbot.enabled: the tag of tbot's image, your cluster's Teleport version (e.g. 18.1.0); ferry's chart is not versioned with Teleport" }}
{{- end }}
{{- if ne (default "tbot" $tbot.nameOverride) "tbot" }}
{{- fail "tbot.nameOverride must stay tbot: ferry reads the identity from the secret <release>-tbot-out" }}
{{- end }}
{{- if not $tbot.defaultOutput.enabled }}
{{- fail "tbot.defaultOutput.enabled must stay true: it is the identity ferry reads; for other outputs deploy Teleport's tbot chart" }}
{{- end }}
{{- if not (has $tbot.persistence (list "secret" "disabled")) }}
{{- fail (printf "tbot.persistence is %q: secret (tbot's state in a secret) or disabled (in memory)" $tbot.persistence) }}
{{- end }}
{{- range $key := list "customConfig" "tbotConfig" "outputs" "services" "argocd" "extraVolumes" "extraVolumeMounts" "fullnameOverride" }}
{{- if index $tbot $key }}
{{- fail (printf "tbot.%s: ferry's chart runs tbot for ferry's identity only; for more, deploy Teleport's tbot chart and set teleport.identitySecretName to its identity secret" $key) }}
{{- end }}
{{- end }}
{{- end }}
