{{/* The chart's name, or nameOverride. */}}
{{- define "ferry.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's full name, or fullnameOverride. */}}
{{- define "ferry.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "ferry.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ferry.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "ferry.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "ferry.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Where the container finds what the chart mounts (the upstream chart's paths). */}}
{{- define "ferry.configPath" -}}/etc/ferry/ferry.toml{{- end }}
{{- define "ferry.pluginsPath" -}}/etc/ferry/plugins{{- end }}
{{- define "ferry.credentialsDir" -}}/var/lib/teleport/plugins/event-handler{{- end }}
{{- /* With PostgreSQL storage: its TLS files, and the compiled plugins' pod-local cache. */}}
{{- define "ferry.postgresTlsDir" -}}/etc/ferry/pg{{- end }}
{{- define "ferry.pluginCachePath" -}}/var/cache/ferry/plugins{{- end }}

{{/* The labels of an object: the chart's, then the user's for that object. */}}
{{- define "ferry.labelsWith" -}}
{{ include "ferry.labels" .root }}
{{- with .extra }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The service account of ferry's pod. */}}
{{- define "ferry.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "ferry.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* tbot's objects are named <release>-tbot, as the upstream chart's tbot sub-chart names them. */}}
{{- define "ferry.tbot.fullname" -}}
{{- printf "%s-%s" .Release.Name (default "tbot" .Values.tbot.nameOverride) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The secret tbot writes ferry's identity to. */}}
{{- define "ferry.tbot.outputSecret" -}}
{{- .Values.tbot.defaultOutput.secretName | default (printf "%s-out" (include "ferry.tbot.fullname" .)) }}
{{- end }}

{{- define "ferry.tbot.serviceAccountName" -}}
{{- default (include "ferry.tbot.fullname" .) .Values.tbot.serviceAccount.name }}
{{- end }}

{{- define "ferry.tbot.tokenName" -}}
{{- default (include "ferry.tbot.fullname" .) .Values.tbot.token }}
{{- end }}

{{/* Teleport's address: teleport.address, else the one tbot joins. */}}
{{- define "ferry.teleportAddress" -}}
{{- $tbot := .Values.tbot }}
{{- if .Values.teleport.address }}
{{- .Values.teleport.address }}
{{- else if $tbot.enabled }}
{{- coalesce $tbot.teleportProxyAddress $tbot.teleportAuthAddress }}
{{- end }}
{{- end }}

{{/* The secret holding ferry's identity file, and its key there. */}}
{{- define "ferry.identitySecretName" -}}
{{- if .Values.teleport.identitySecretName }}
{{- .Values.teleport.identitySecretName }}
{{- else if .Values.tbot.enabled }}
{{- include "ferry.tbot.outputSecret" . }}
{{- end }}
{{- end }}

{{- define "ferry.identitySecretPath" -}}
{{- if and .Values.tbot.enabled (not .Values.teleport.identitySecretName) }}identity{{ else }}{{ .Values.teleport.identitySecretPath }}{{ end }}
{{- end }}

{{/* The secrets cert-manager writes. */}}
{{- define "ferry.certManager.serverSecret" -}}{{ include "ferry.fullname" . }}-server-tls{{- end }}
{{- define "ferry.certManager.clientSecret" -}}{{ include "ferry.fullname" . }}-client-tls{{- end }}

{{/* The issuer of the certificates: the release's own CA, or the user's. */}}
{{- define "ferry.certManager.issuerRef" -}}
{{- $cm := .Values.certManager }}
{{- if $cm.issuer.create -}}
name: {{ include "ferry.fullname" . }}-ca-issuer
kind: Issuer
group: cert-manager.io
{{- else -}}
name: {{ coalesce $cm.issuer.name $cm.issuerName | required "certManager.issuer.name is required with certManager.issuer.create false: the Issuer or ClusterIssuer that signs the certificates" }}
kind: {{ coalesce $cm.issuer.kind $cm.issuerKind | required "certManager.issuer.kind is required with certManager.issuer.create false: Issuer or ClusterIssuer" }}
group: {{ coalesce $cm.issuer.group $cm.issuerGroup | required "certManager.issuer.group is required with certManager.issuer.create false: e.g. cert-manager.io" }}
{{- end }}
{{- end }}

{{/* The Operator's join spec for the bot's token. */}}
{{- define "ferry.crd.tokenSpec" -}}
{{- $tbot := .Values.tbot }}
{{- $method := get .Values.crd.tokenSpecOverride "join_method" }}
{{- if and $tbot.enabled $method (ne $method $tbot.joinMethod) }}
{{- fail (printf "crd.tokenSpecOverride.join_method (%s) differs from tbot.joinMethod (%s): tbot joins by the token's method, make them the same" $method $tbot.joinMethod) }}
{{- end }}
{{- if and $tbot.enabled (eq $tbot.joinMethod "kubernetes") }}
{{- $default := dict "join_method" "kubernetes" "kubernetes" (dict "type" "in_cluster" "allow" (list (dict "service_account" (printf "%s:%s" .Release.Namespace (include "ferry.tbot.serviceAccountName" .))))) }}
{{- mustMergeOverwrite $default (deepCopy .Values.crd.tokenSpecOverride) | toYaml }}
{{- else }}
{{- if not $method }}
{{- fail "crd.tokenSpecOverride needs join_method and its settings (the token's spec in Teleport's terms) unless tbot.enabled joins by the kubernetes method" }}
{{- end }}
{{- toYaml .Values.crd.tokenSpecOverride }}
{{- end }}
{{- end }}

{{/* tbot's config: join, keep its state, write ferry's identity to a secret. */}}
{{- define "ferry.tbot.config" -}}
{{- $tbot := .Values.tbot -}}
version: v2
{{- with $tbot.teleportProxyAddress }}
proxy_server: {{ . | quote }}
{{- end }}
{{- with $tbot.teleportAuthAddress }}
auth_server: {{ . | quote }}
{{- end }}
onboarding:
  join_method: {{ $tbot.joinMethod | quote }}
  token: {{ include "ferry.tbot.tokenName" . | quote }}
storage:
{{- if eq $tbot.persistence "secret" }}
  type: kubernetes_secret
  name: {{ include "ferry.tbot.fullname" . | quote }}
{{- else }}
  type: memory
{{- end }}
outputs:
  - type: identity
    destination:
      type: kubernetes_secret
      name: {{ include "ferry.tbot.outputSecret" . | quote }}
{{- end }}
