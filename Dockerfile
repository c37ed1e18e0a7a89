# sdhub's container image, FROM scratch: nothing is pulled, no Go image is
# needed. `make image` (scripts/image.sh) builds the static binary on the
# host, as the release tarballs are built, stages it under .build/image/
# with the host's CA certificates and an empty output directory, and runs
# `docker build` here. It works with BuildKit and with the classic builder.
#
# sdhub runs as user sdhub (65532), not root. /sd, the output directory, is
# owned by that user: a named volume mounted there starts as a copy of it,
# so sdhub can write into it (a bind-mounted host directory must be
# writable by uid 65532 itself).
FROM scratch
ARG TARGETARCH=amd64
ARG VERSION=unknown
ARG REVISION=unknown
LABEL org.opencontainers.image.title="sdhub" \
      org.opencontainers.image.description="Service discovery for Prometheus: runs the service discovery of a prometheus.yml and serves file_sd files and http_sd" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
COPY packaging/docker/passwd packaging/docker/group /etc/
COPY .build/image/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY .build/image/linux-${TARGETARCH}/sdhub /bin/sdhub
COPY --chown=65532:65532 .build/image/sd /sd
USER 65532:65532
WORKDIR /sd
VOLUME ["/sd"]
EXPOSE 9099
ENTRYPOINT ["/bin/sdhub"]
CMD ["--config.file=/etc/sdhub/sdhub.yml", "--output.dir=/sd"]
