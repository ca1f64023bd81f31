from django.contrib import admin
from django.urls import include, path

from appliance.login_throttle import ThrottledAdminAuthenticationForm

admin.site.login_form = ThrottledAdminAuthenticationForm

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("inference.api.urls")),
]
